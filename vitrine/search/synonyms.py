"""A collection's own synonym groups: checked when set, read leniently when stored."""

from __future__ import annotations

import json
from typing import Any

from vitrine.errors import InvalidInput
from vitrine.search.query import check_text

MAX_GROUPS = 1000
MAX_GROUP_SIZE = 20
MAX_PHRASE_CHARS = 60


def check_synonyms(groups: Any) -> list[list[str]]:
    """Groups of 2+ phrases that mean the same ("sneakers", "trainers"); duplicates dropped."""
    if not isinstance(groups, list) or len(groups) > MAX_GROUPS:
        raise InvalidInput(f"synonyms are a list of at most {MAX_GROUPS} groups", field="synonyms")
    clean: list[list[str]] = []
    for i, group in enumerate(groups):
        where = f"synonyms.{i}"
        if not isinstance(group, list) or not 2 <= len(group) <= MAX_GROUP_SIZE:
            raise InvalidInput(f"a group is a list of 2 to {MAX_GROUP_SIZE} phrases", field=where)
        phrases: list[str] = []
        for phrase in group:
            if not isinstance(phrase, str) or not phrase.strip() or len(phrase) > MAX_PHRASE_CHARS:
                raise InvalidInput(f"a phrase is 1 to {MAX_PHRASE_CHARS} characters of text", field=where)
            text = " ".join(check_text(phrase, where).lower().split())
            if text not in phrases:
                phrases.append(text)
        if len(phrases) < 2:
            raise InvalidInput("a group needs two different phrases", field=where)
        clean.append(phrases)
    return clean


def parse_synonyms(stored: str) -> list[list[str]]:
    try:
        groups = json.loads(stored)
        return check_synonyms(groups)
    except (ValueError, InvalidInput):
        return []
