"""Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``), with no client
library and no driver: Chromium reads commands on fd 3 and writes answers and events on fd 4, each message
one JSON object ended by a NUL byte (the channel Playwright and Puppeteer's ``pipe: true`` use).

One :class:`Chromium` per test session; each page opens in a fresh tab (:meth:`Chromium.open`) that records
from its first request on what the page logs as an error, every URL it requests, and any dialog it opens
(answered at once, so a page that calls ``alert`` cannot hang the test).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

# Headless, no GPU, and nothing that talks to Google's hosts in the background (without these flags
# Chromium fetches components, field trials and sync data as it starts).
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--no-default-browser-check", "--mute-audio",
         "--hide-scrollbars"]
TIMEOUT = 30.0  # seconds for any one answer; a test page loads in well under one
HEIGHT = 900  # the viewport's height; its width is what a test sets


class BrowserError(RuntimeError):
    """Chromium died, did not answer in time, or answered a command with an error."""


def find_chromium() -> str | None:
    """The browser to drive: $CVKIT_CHROMIUM, else chromium (Debian, Ubuntu) or Google Chrome on the PATH."""
    named = os.environ.get("CVKIT_CHROMIUM")
    if named:
        return named if os.access(named, os.X_OK) else None
    for name in ("chromium", "chromium-browser", "google-chrome-stable", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Chromium:
    """A headless Chromium with a fresh profile in a temporary folder, removed by :meth:`close`."""

    def __init__(self, binary: str) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="cvkit-chromium-"))
        commands_r, self._commands = os.pipe()
        self._answers, answers_w = os.pipe()
        self.log = self.profile.parent / f"{self.profile.name}.log"

        def pipes_on_3_and_4() -> None:  # in the child: either pipe may sit on 3 or 4 already, so lift both first
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (commands_r, answers_w)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [binary, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-pipe", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=pipes_on_3_and_4, pass_fds=(3, 4))
        os.close(commands_r)
        os.close(answers_w)
        self._buffer = bytearray()
        self._next_id = 0
        self._events: dict[str, list[dict]] = {}  # session id -> its events not yet taken
        try:
            self.version = self.call("Browser.getVersion")["product"]
        except BrowserError:
            self.close()
            raise

    # ------------------------------------------------------------------ the protocol

    def _read_message(self, deadline: float, waiting_for: str) -> dict:
        while True:
            end = self._buffer.find(b"\0")
            if end >= 0:
                message = bytes(self._buffer[:end])
                del self._buffer[:end + 1]
                return json.loads(message)
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"Chromium did not answer {waiting_for} within {TIMEOUT:.0f} s")
            ready, _, _ = select.select([self._answers], [], [], left)
            if ready:
                chunk = os.read(self._answers, 1 << 20)
                if not chunk:
                    raise BrowserError(f"Chromium closed its pipe while {waiting_for} was pending; its log "
                                       f"ends with: {self.log_tail()}")
                self._buffer += chunk

    def _write(self, method: str, params: dict, session: str | None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        return self._next_id

    def call(self, method: str, session: str | None = None, **params: Any) -> dict:
        """Send one command and wait for its answer; events that arrive meanwhile are kept for their tab."""
        wanted = self._write(method, params, session)
        deadline = time.monotonic() + TIMEOUT
        while True:
            message = self._read_message(deadline, method)
            if message.get("id") == wanted:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error'].get('message')}")
                return message.get("result", {})
            if "method" in message:
                self._event(message)

    def _event(self, message: dict) -> None:
        session = message.get("sessionId", "")
        if message["method"] == "Page.javascriptDialogOpening":  # answer it now, or the page's script blocks
            self._write("Page.handleJavaScriptDialog", {"accept": False}, session)
        self._events.setdefault(session, []).append(message)

    def wait_for(self, session: str, method: str, timeout: float = TIMEOUT) -> None:
        """Read messages until the tab ``session`` has had event ``method``."""
        deadline = time.monotonic() + timeout
        while not any(e["method"] == method for e in self._events.get(session, [])):
            message = self._read_message(deadline, method)
            if "method" in message:
                self._event(message)

    def events(self, session: str) -> list[dict]:
        return self._events.get(session, [])

    # ------------------------------------------------------------------ tabs

    def open(self, url: str, width: int = 1280) -> Tab:
        """A fresh tab ``width`` pixels wide that has loaded ``url`` (its load event has fired)."""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        tab = Tab(self, target, session)
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session)
        tab.set_width(width)
        self._events[session] = []  # about:blank's own events are not the page's
        failed = self.call("Page.navigate", session, url=url).get("errorText")
        if failed:
            tab.close()
            raise BrowserError(f"Chromium could not open {url}: {failed}")
        self.wait_for(session, "Page.loadEventFired")
        return tab

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-lines:]) or "(empty)"
        except OSError:
            return "(no log)"

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self._write("Browser.close", {}, None)
                self.process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        for fd in (self._commands, self._answers):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)
        self.log.unlink(missing_ok=True)


class Tab:
    """One page in its own tab: what it logged and requested, and JavaScript run in it."""

    def __init__(self, browser: Chromium, target: str, session: str) -> None:
        self.browser = browser
        self.target = target
        self.session = session

    def __enter__(self) -> Tab:
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        try:
            self.close()
        except BrowserError:
            if kind is None:  # else the test's own failure is the one to see
                raise

    def close(self) -> None:
        self.browser.call("Target.closeTarget", targetId=self.target)
        self.browser._events.pop(self.session, None)

    def call(self, method: str, **params: Any) -> dict:
        return self.browser.call(method, self.session, **params)

    def evaluate(self, expression: str, await_promise: bool = False) -> Any:
        """The value of a JavaScript expression in the page (JSON-able values only)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=await_promise)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            thrown = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"{expression[:60]}...: {thrown}")
        return result["result"].get("value")

    def _events(self, *methods: str) -> list[dict]:
        return [e["params"] for e in self.browser.events(self.session) if e["method"] in methods]

    def errors(self) -> list[str]:
        """What the page logged as an error: console.error and failed asserts, uncaught exceptions, and the
        browser's own error entries (a blocked script or a Content-Security-Policy violation, a failed load)."""
        out = []
        for e in self._events("Runtime.consoleAPICalled"):
            if e["type"] in ("error", "assert"):
                out.append("console." + e["type"] + ": " + " ".join(str(a.get("value", a.get("description", "")))
                                                                    for a in e.get("args", [])))
        for e in self._events("Runtime.exceptionThrown"):
            details = e["exceptionDetails"]
            out.append("uncaught: " + (details.get("exception", {}).get("description") or details.get("text", "")))
        for e in self._events("Log.entryAdded"):
            entry = e["entry"]
            if entry["level"] == "error":
                out.append(f"{entry['source']}: {entry['text']} {entry.get('url', '')}".strip())
        return out

    def requests(self) -> list[str]:
        """Every URL the page requested, in order (the page itself first)."""
        return [e["request"]["url"] for e in self._events("Network.requestWillBeSent")]

    def dialogs(self) -> list[str]:
        """The alert, confirm or prompt dialogs the page opened (each dismissed at once)."""
        return [f"{e['type']}: {e['message']}" for e in self._events("Page.javascriptDialogOpening")]

    def set_width(self, width: int) -> None:
        """Lay the page out in a window ``width`` CSS pixels wide (a desktop window, not a phone's viewport)."""
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=HEIGHT, deviceScaleFactor=1, mobile=False)

    def click(self, selector: str) -> None:
        """Click the centre of the first element matching ``selector`` with the mouse, as a user would."""
        box = self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
                            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
                            " return [r.left + r.width / 2, r.top + r.height / 2]; })()")
        if box is None:
            raise BrowserError(f"nothing on the page matches {selector}")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def images(self) -> list[tuple[str, int]]:
        """Each ``<img>``'s source (a data URI's first 40 characters, a URL's last 80) and natural width once it
        has loaded (0: it did not decode). Lazy pictures are loaded first, as scrolling down to them would."""
        return [tuple(pair) for pair in self.evaluate("""Promise.all(Array.from(document.images, img => {
            img.loading = "eager";
            const shown = img.decode().then(() => img.naturalWidth, () => 0);
            const late = new Promise(done => setTimeout(() => done(-1), 10000));
            const src = img.src.startsWith("data:") ? img.src.slice(0, 40) : img.src.slice(-80);
            return Promise.race([shown, late]).then(width => [src, width]);
        }))""", await_promise=True)]

    def overflow(self) -> dict:
        """How wide the page is laid out against its window: ``scrollWidth``, ``clientWidth`` and ``innerWidth``
        of the document, and ``wide``: up to 5 elements that reach past the window's right edge with no
        ancestor that clips or scrolls them (what makes the page scroll sideways)."""
        return self.evaluate("""(() => {
            const root = document.documentElement, edge = root.clientWidth + 0.5;
            const held = el => { for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
                if (getComputedStyle(a).overflowX !== "visible") return true; } return false; };
            const classes = el => typeof el.className === "string" && el.className.trim() ?
                "." + el.className.trim().split(/\\s+/).join(".") : "";
            const name = el => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + classes(el);
            const wide = [];
            for (const el of document.body.querySelectorAll("*")) {
                const right = el.getBoundingClientRect().right;
                if (right > edge && !held(el)) wide.push(name(el) + " to " + Math.round(right) + " px");
            }
            return {scrollWidth: root.scrollWidth, clientWidth: root.clientWidth, innerWidth: window.innerWidth,
                    wide: wide.slice(0, 5)};
        })()""")

    def broken_words(self) -> list[str]:
        """What table cells break where no reader would: a figure (``td.num``) laid out on more than one line
        (``0.87`` above ``5``), or a short word (up to 12 characters between spaces, hyphens and slashes) split
        across lines (``ep`` above ``och``). Long tokens such as paths may wrap; the table should rather scroll."""
        return self.evaluate("""(() => {
            const lines = range => new Set(Array.from(range.getClientRects(), r => Math.round(r.top))).size;
            const out = [];
            for (const cell of document.querySelectorAll("th, td")) {
                const range = document.createRange();
                if (cell.matches("td.num")) {
                    range.selectNodeContents(cell);
                    if (lines(range) > 1) out.push(cell.textContent);
                    continue;
                }
                const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
                for (let node = walker.nextNode(); node; node = walker.nextNode()) {
                    for (const word of node.data.matchAll(/[^\\s\\/-]+/g)) {
                        if (word[0].length < 2 || word[0].length > 12) continue;
                        range.setStart(node, word.index);
                        range.setEnd(node, word.index + word[0].length);
                        if (lines(range) > 1) out.push(word[0]);
                    }
                }
            }
            return out;
        })()""")

    def table(self, selector: str) -> list[list[tuple[str, float | None]]]:
        """The body rows of the table at ``selector``: each cell's text and its ``data-value`` (None without)."""
        rows = self.evaluate(f"""(() => {{ const t = document.querySelector({json.dumps(selector)});
            if (!t) return null;
            return Array.from(t.tBodies[0].rows, r => Array.from(r.cells, c => [c.textContent,
                c.hasAttribute("data-value") ? parseFloat(c.getAttribute("data-value")) : null])); }})()""")
        if rows is None:
            raise BrowserError(f"nothing on the page matches {selector}")
        return [[(text, value) for text, value in row] for row in rows]

    def header(self, selector: str) -> list[str]:
        """The column names of the table at ``selector``."""
        return self.evaluate(f"Array.from(document.querySelectorAll({json.dumps(selector + ' thead th')}), "
                             "th => th.textContent)")

    def screenshot(self, path: Path, max_height: int = 6000) -> Path:
        """The page as the window shows it, down to its end (or ``max_height`` pixels), as a PNG at ``path``."""
        metrics = self.call("Page.getLayoutMetrics")
        clip = {"x": 0, "y": 0, "width": metrics["cssLayoutViewport"]["clientWidth"],
                "height": min(metrics["cssContentSize"]["height"], max_height), "scale": 1}
        data = self.call("Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))
        return path
