"""`vitrine rules` (pin, boost, bury, hide) and `vitrine synonyms`: a collection's merchandising."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from vitrine.cli.format import table
from vitrine.engine import Engine
from vitrine.search.rules import ACTIONS


def add_parsers(sub: Any) -> None:
    rules = sub.add_parser("rules", help="merchandising rules: pin, boost, bury or hide products")
    rsub = rules.add_subparsers(dest="action", required=True)
    rlist = rsub.add_parser("list", help="the collection's rules")
    rlist.add_argument("collection")
    rlist.add_argument("--json", action="store_true")
    radd = rsub.add_parser("add", help="add a rule; searches apply it at once")
    radd.add_argument("collection")
    radd.add_argument("rule", choices=ACTIONS)
    radd.add_argument("--query", "-q", help="only for searches of this text (default: every search and browse)")
    radd.add_argument("--product", dest="product_id", help="pin / hide: the product id")
    radd.add_argument("--position", type=int, help="pin: 1 = first")
    radd.add_argument("--where", metavar="FIELD=VALUE",
                      help="boost / bury / hide: products with this value (in_stock=true|false for availability)")
    radd.add_argument("--weight", type=float, help="boost / bury: how far, above 0 and up to 1 (default 0.1)")
    rremove = rsub.add_parser("remove", help="remove a rule by its id")
    rremove.add_argument("collection")
    rremove.add_argument("rule_id")

    synonyms = sub.add_parser("synonyms", help="a collection's own synonyms (the built-in ones always apply)")
    synonyms.add_argument("collection")
    synonyms.add_argument("--add", action="append", default=[], metavar="A,B[,C]",
                          help="a group of phrases that mean the same here, e.g. 'parka,jacket'")
    synonyms.add_argument("--remove", action="append", default=[], metavar="PHRASE",
                          help="drop the groups holding this phrase")
    synonyms.add_argument("--clear", action="store_true", help="drop every group")
    synonyms.add_argument("--json", action="store_true")


def cmd_rules(engine: Engine, args: argparse.Namespace) -> int:
    if args.action == "add":
        raw: dict[str, Any] = {"action": args.rule}
        for key in ("query", "product_id", "position", "weight"):
            if getattr(args, key) is not None:
                raw[key] = getattr(args, key)
        if args.where:
            field, _, value = args.where.partition("=")
            raw["field"] = field.strip()
            if value.strip():
                raw["value"] = value.strip()
        rule = engine.add_rule(args.collection, raw)
        _say(f"added rule {rule.id}: {json.dumps(rule.as_dict())}")
    elif args.action == "remove":
        engine.delete_rule(args.collection, args.rule_id)
        _say(f"removed rule {args.rule_id}")
    else:
        rules = [r.as_dict() for r in engine.rules(args.collection)]
        if args.json:
            _say(json.dumps(rules, indent=2))
        elif not rules:
            _say("no rules")
        else:
            rows = [[r["id"], r["action"], r.get("query", "(every search)"),
                     r.get("product_id") or f"{r.get('field')}={r.get('value', '')}",
                     r.get("position", r.get("weight", ""))] for r in rules]
            _say(table(["id", "action", "query", "what", "position / weight"], rows, [12, 6, 24, 30, 17]))
    return 0


def cmd_synonyms(engine: Engine, args: argparse.Namespace) -> int:
    groups = [] if args.clear else engine.synonyms(args.collection)
    drop = {" ".join(p.lower().split()) for p in args.remove}
    groups = [g for g in groups if not drop & set(g)]
    groups += [[p.strip() for p in added.split(",") if p.strip()] for added in args.add]
    if args.add or args.remove or args.clear:
        groups = engine.set_synonyms(args.collection, groups)
    if args.json:
        _say(json.dumps(groups))
    else:
        _say("\n".join(", ".join(g) for g in groups) if groups else "no synonyms of its own")
    return 0


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")


COMMANDS = {"rules": cmd_rules, "synonyms": cmd_synonyms}
