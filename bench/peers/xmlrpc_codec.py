"""Python's xmlrpc.client on the payloads `tether-bench codec --dir DIR` wrote, for the same
figures: MB/s of XML decoded (loads) and encoded (dumps of the decoded value as a
methodResponse), each measured for about a second. One JSON line per figure, as the Rust
generator writes them.

    python3 bench/peers/xmlrpc_codec.py DIR
"""
import json
import sys
import time
import xmlrpc.client
from pathlib import Path


def throughput(nbytes, f):
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < 1.0 or n < 3:
        f()
        n += 1
    return nbytes * n / (time.perf_counter() - start) / 1e6


def main(folder):
    for name in ("small", "large"):
        xml = (Path(folder) / f"{name}.xml").read_bytes()
        (value,), _ = xmlrpc.client.loads(xml)
        figures = {
            "encode": throughput(len(xml), lambda: xmlrpc.client.dumps((value,), methodresponse=True)),
            "decode": throughput(len(xml), lambda: xmlrpc.client.loads(xml)),
        }
        for way, mb in figures.items():
            line = {"scenario": "codec", "peer": "python", "mode": f"{way} {name}",
                    "xml_bytes": len(xml), "mb_per_s": mb}
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
