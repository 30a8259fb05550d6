"""HTTP search latency and throughput under load: wrk (Debian's `wrk`) against `vitrine serve` over
the benchmark home (run ingest_throughput.py first), at 1, 4 and 16 concurrent connections, for
text and image searches over every collection. The result cache is off and the rate limit too,
so every request is a real search. Loopback only.

    python benchmarks/http_load.py [--seconds 15] [--workers 2]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import BENCH_HOME, DATA, REPO, save
from PIL import Image

LUA = """
local bodies = {}
for line in io.lines("%s") do bodies[#bodies + 1] = line end
local i = 0
request = function()
  i = i %% #bodies + 1
  return wrk.format("POST", "/search", {["Content-Type"] = "application/json"}, bodies[i])
end
"""


def text_bodies() -> list[str]:
    queries = [q["query"] for name in ("hm", "fpi") for q in json.loads((DATA / name / "gt.json").read_text())[
        "text_queries"]]
    return [json.dumps({"text": q, "top_k": 10}) for q in queries]


def image_bodies(n: int = 200) -> list[str]:
    photos = sorted((DATA / "hm" / "images").rglob("*.jpg")) + sorted((DATA / "fpi" / "images").rglob("*.jpg"))
    bodies = []
    for path in random.Random(2).sample(photos, n):
        image = Image.open(path).convert("RGB")
        w, h = image.size
        buffer = io.BytesIO()  # cropped and re-encoded: new bytes, as a user's photo would be
        image.crop((w // 20, h // 20, w - w // 20, h - h // 20)).save(buffer, format="JPEG", quality=88)
        bodies.append(json.dumps({"image_base64": base64.b64encode(buffer.getvalue()).decode(), "top_k": 10}))
    return bodies


def parse_wrk(output: str) -> dict[str, float]:
    def ms(value: str) -> float:
        number, unit = re.match(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
        return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    percentiles = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", output, re.M))
    result = {f"p{k}_ms": round(ms(v), 2) for k, v in percentiles.items()}
    result["requests_per_s"] = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    result["non_2xx"] = int(errors.group(1)) if errors else 0
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--workers", type=int, default=1, help="server processes (vitrine serve --workers)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "VITRINE_HOME": str(BENCH_HOME), "VITRINE_RATE_LIMIT_PER_MINUTE": "0",
           "VITRINE_SEARCH_CACHE_SIZE": "0", "PYTHONPATH": str(REPO)}
    server = subprocess.Popen([sys.executable, "-m", "vitrine", "serve", "--port", str(port), "--no-demo",
                               "--workers", str(args.workers)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    results: dict[str, dict[str, dict[str, float]]] = {}
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        products = sum(c["products"] for c in httpx.get(f"{base}/collections").json())
        warm_until = time.monotonic() + 10  # every worker process loads its vectors before the runs
        while time.monotonic() < warm_until:
            httpx.post(f"{base}/search", json={"text": "warm up", "top_k": 10}, timeout=60)
        with tempfile.TemporaryDirectory() as tmp:
            for kind, bodies in (("text", text_bodies()), ("image", image_bodies())):
                body_file = Path(tmp) / f"{kind}.jsonl"
                body_file.write_text("\n".join(bodies) + "\n")
                script = Path(tmp) / f"{kind}.lua"
                script.write_text(LUA % body_file)
                for clients in (1, 4, 16):
                    run = subprocess.run(["wrk", "-t", str(min(clients, 2)), "-c", str(clients), "-d",
                                          f"{args.seconds}s", "--latency", "-s", str(script), base],
                                         capture_output=True, text=True, check=True)
                    results.setdefault(kind, {})[f"{clients}_clients"] = parse_wrk(run.stdout)
                    print(kind, clients, results[kind][f"{clients}_clients"], flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    summary = {"products": products, "seconds_per_run": args.seconds, "workers": args.workers, "results": results}
    print(f"saved {save(f'http_load_workers{args.workers}', summary)}")


if __name__ == "__main__":
    main()
