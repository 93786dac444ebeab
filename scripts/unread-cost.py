#!/usr/bin/env python3
"""What one exact unread count costs at the persistence API, by the width of
the window it reads: a fresh `chat up` (embedded store) in a temp dir, one
chat, messages published one by one over HTTP, and after each step 30
timed reads of a member's read state (position 0, so the whole window is
unread; past 10,000 numbers the count is capped).

    scripts/unread-cost.py [--chat target/release/chat] [--windows 100,1000,10000,12000]
"""
import argparse
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request

KEY = "op_unread_cost"
API = "http://127.0.0.1:8081"
ENGINE = "http://127.0.0.1:8080"


def call(method, url, token, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, method=method, data=data, headers={"Authorization": "Bearer " + token}
    )
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read() or b"null")


def wait_healthy():
    for _ in range(150):
        try:
            urllib.request.urlopen(API + "/healthz")
            urllib.request.urlopen(ENGINE + "/healthz")
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("chat up did not become healthy")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--chat", default="target/release/chat")
    parser.add_argument("--windows", default="100,1000,10000,12000")
    args = parser.parse_args()
    windows = [int(w) for w in args.windows.split(",")]
    data = tempfile.mkdtemp(prefix="chat-unread-cost.")
    env = dict(os.environ, CHAT_OPERATOR_KEY=KEY, CHAT_DATA_DIR=data, RUST_LOG="warn")
    log = open(os.path.join(data, "up.log"), "w")
    up = subprocess.Popen([args.chat, "up"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy()
        app = call("POST", API + "/v1/apps", KEY, {"title": "unread cost"})
        token, app_id = app["token"], app["id"]
        chat = call("POST", API + "/v1/chats", token, {})["number"]
        call("PUT", f"{API}/v1/chats/{chat}/subscribers/bob", token)
        published = 0
        print("| window (messages after the position) | unread_count | capped | p50 ms | p90 ms |")
        print("|---|---|---|---|---|")
        for window in windows:
            for _ in range(window - published):
                body = {"from": "alice", "body": "x" * 100}
                call("POST", f"{ENGINE}/v1/chats/{chat}/messages", token, body)
                published += 1
            times = []
            for _ in range(30):
                start = time.perf_counter()
                path = f"{API}/internal/v1/apps/{app_id}/chats/{chat}/reads/bob"
                read = call("GET", path, KEY)
                times.append((time.perf_counter() - start) * 1000)
            times.sort()
            print(
                f"| {window:,} | {read['unread_count']:,} | {str(read['unread_capped']).lower()} "
                f"| {times[len(times) // 2]:.2f} | {times[int(len(times) * 0.9)]:.2f} |"
            )
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait()


if __name__ == "__main__":
    main()
