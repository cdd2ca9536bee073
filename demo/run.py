"""``make run``: three demo upstreams, then Outrider on demo/envoy.yaml (Ctrl-C stops both)."""

from __future__ import annotations

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> int:
    upstreams = subprocess.Popen([sys.executable, os.path.join(HERE, "upstream.py"),
                                  "10001", "10002", "10003"])
    print("\n  proxy:  curl -v http://127.0.0.1:10000/api/anything\n"
          "  direct: curl http://127.0.0.1:10000/hello\n"
          "  admin:  curl http://127.0.0.1:9901/stats  (and /clusters, /ready, /server_info)\n"
          "\n  Ctrl-C stops the proxy and the demo upstreams.\n",
          flush=True)
    try:
        return subprocess.call([sys.executable, "-m", "outrider", "-c",
                                os.path.join(HERE, "envoy.yaml")])
    except KeyboardInterrupt:
        return 0
    finally:
        upstreams.terminate()
        upstreams.wait()


if __name__ == "__main__":
    sys.exit(main())
