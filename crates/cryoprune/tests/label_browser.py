"""Drives the labelling page in a real headless Chromium over the DevTools protocol: waits for the
gallery, labels N particles of each class by keyboard (1, then 2), undoes one with z and labels it
again, waits for the background training to reorder the gallery, switches to the micrograph view
(zooms in), then to the clusters view (labels a group and undoes it), and saves screenshots. Called by tests/label_browser.rs
with the page's address, N, and the folder for the screenshots.
"""

import base64
import collections
import json
import re
import subprocess
import sys
import tempfile
import threading
import time

import websocket

url, per_class, shots = sys.argv[1], int(sys.argv[2]), sys.argv[3]
profile = tempfile.mkdtemp()
browser = subprocess.Popen(
    ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
     f"--user-data-dir={profile}", "--window-size=1100,800", "about:blank"],
    stderr=subprocess.PIPE, text=True)
try:
    ws_url = None
    for line in browser.stderr:
        m = re.search(r"DevTools listening on (ws://\S+)", line)
        if m:
            ws_url = m.group(1)
            break
    assert ws_url, "chromium did not start its DevTools endpoint"
    # Chromium goes on writing to stderr: read it all, or a full pipe stalls the browser.
    said = collections.deque(maxlen=20)
    threading.Thread(target=lambda: said.extend(browser.stderr), daemon=True).start()
    ws = websocket.create_connection(ws_url, timeout=30)
    ids = iter(range(1, 1 << 30))

    def call(method, session=None, **params):
        n = next(ids)
        msg = {"id": n, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        ws.send(json.dumps(msg))
        while True:
            r = json.loads(ws.recv())
            if r.get("id") == n:
                assert "error" not in r, r
                return r["result"]

    target = call("Target.createTarget", url="about:blank")["targetId"]
    s = call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    call("Page.enable", s)
    call("Page.navigate", s, url=url)

    def js(expr):
        r = call("Runtime.evaluate", s, expression=expr, returnByValue=True, awaitPromise=True)
        return r["result"].get("value")

    def wait(expr, what, seconds=120):
        end = time.time() + seconds
        while time.time() < end:
            if js(expr):
                return
            time.sleep(0.1)
        page = js("JSON.stringify({url: location.href, title: document.title, "
                  "picks: document.querySelectorAll('.pick').length, "
                  "loaded: [...document.querySelectorAll('.pick img')].filter(i => i.complete).length, "
                  "widths: [...new Set([...document.querySelectorAll('.pick img')].map(i => i.naturalWidth))], "
                  "message: document.getElementById('message')?.textContent})")
        raise AssertionError(f"timed out waiting for {what}: {page}; chromium: {list(said)}")

    def key(k):
        for kind in ("keyDown", "keyUp"):
            call("Input.dispatchKeyEvent", s, type=kind, key=k, text=k if kind == "keyDown" else "",
                 code=f"Digit{k}" if k.isdigit() else f"Key{k.upper()}")

    def counts():
        return js("document.getElementById('counts').textContent")

    def screenshot(name):
        data = call("Page.captureScreenshot", s, format="png")["data"]
        with open(f"{shots}/{name}.png", "wb") as f:
            f.write(base64.b64decode(data))

    # Every thumbnail of the first screen has loaded.
    wait("document.querySelectorAll('.pick img').length >= 20 && "
         "[...document.querySelectorAll('.pick img')].every(i => i.complete && i.naturalWidth == 32)",
         "the gallery's images")
    screenshot("gallery_start")
    for cls, k in ((0, "1"), (1, "2")):
        for i in range(per_class):
            key(k)
            want = [per_class if c < cls else (i + 1 if c == cls else 0) for c in range(2)]
            text = f"particle: {want[0]}junk: {want[1]}"
            wait(f"document.getElementById('counts').textContent == {json.dumps(text)}",
                 f"counts {text} (now {counts()})")
    key("z")
    wait(f"document.getElementById('counts').textContent == 'particle: {per_class}junk: {per_class - 1}'",
         "the undo")
    key("2")
    wait(f"document.getElementById('counts').textContent == 'particle: {per_class}junk: {per_class}'",
         "the label after the undo")
    # The page trained on the labels in the background and ordered the gallery by the model.
    wait("document.getElementById('order').textContent.includes('most uncertain first') && "
         "document.getElementById('training').textContent.startsWith('trained on') && "
         "document.querySelectorAll('.pick .predicted').length > 0",
         "the background training's order", seconds=400)
    wait("[...document.querySelectorAll('.pick img')].every(i => i.complete)", "the reordered images")
    screenshot("gallery")
    js("document.getElementById('show-micrograph').click()")
    tiles_loaded = ("(() => micView && tiles.size > 0 && "
                    "[...tiles.values()].every(i => i.complete && i.naturalWidth > 0))()")
    wait(tiles_loaded, "the micrograph's tiles")
    key("+")
    key("+")
    wait(f"zoom > 1.5 * Math.min(canvas.width / micView.nx, canvas.height / micView.ny) && {tiles_loaded}",
         "the zoomed tiles")
    key("=")
    wait(tiles_loaded, "the micrograph's tiles after the zoom")
    screenshot("micrograph")
    js("document.getElementById('show-clusters').click()")
    js("document.getElementById('make-clusters').click()")
    wait("document.querySelectorAll('.group').length >= 2 && "
         "[...document.querySelectorAll('.group img')].every(i => i.complete && i.naturalWidth > 0)",
         "the clusters")
    screenshot("clusters")
    before = counts()
    key("2")
    wait(f"document.getElementById('counts').textContent != {json.dumps(before)}", "the group's labels")
    key("z")
    wait(f"document.getElementById('counts').textContent == {json.dumps(before)}", "the group's undo")
    print(counts())
finally:
    browser.kill()
