#!/usr/bin/env python3
"""nbshot - open a notebook in a real JupyterLab inside headless Chromium,
run all cells, wait for the kernel to go idle, and take a screenshot.

usage: python nbshot.py NOTEBOOK.ipynb OUT.png [--timeout 120]

(A copy of the team's ../shared/tools/nbshot.py, kept here so that a clean clone can run the browser
check in tests/test_browser.py; only reformatted for this repository's linters.)

Exit codes: 0 ok, 1 a cell raised an error, 2 execution timed out,
            3 infrastructure failure (server/browser/notebook did not start),
            4 widgets fell back to text (only with --strict-widgets).

The notebook file on disk is NOT modified (autosave is switched off and the
document is never saved).  Everything runs in temp dirs that are removed at
the end; the jupyter server (and its kernels) and the browser are stopped.
"""

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

# JupyterLab user settings written into a throw-away user_settings_dir.
LAB_SETTINGS = {
    # render every cell in the DOM (default windowing skips offscreen cells)
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        "windowingMode": "none",
        "autoStartDefaultKernel": True,
        "scrollPastEnd": False,
    },
    # never write the executed notebook back to disk
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    # no "fetch Jupyter news?" toast over the notebook, no network calls
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
T0 = time.monotonic()


def log(msg):
    print(f"[nbshot {time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_jupyter():
    cand = os.path.join(os.path.dirname(sys.executable), "jupyter")
    return cand if os.path.exists(cand) else (shutil.which("jupyter") or "jupyter")


def http(url, token, method="GET", timeout=5):
    req = urllib.request.Request(url, method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


class Server:
    def __init__(self, nbdir, tmp):
        self.nbdir, self.tmp = nbdir, tmp
        self.port, self.token = free_port(), secrets.token_hex(24)
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = None
        self.logpath = os.path.join(tmp, "jupyter-server.log")

    def start(self, wait_s=90):
        settings = os.path.join(self.tmp, "user-settings")
        for rel, data in LAB_SETTINGS.items():
            path = os.path.join(settings, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                json.dump(data, f)
        runtime = os.path.join(self.tmp, "runtime")
        os.makedirs(runtime, exist_ok=True)
        cmd = [
            find_jupyter(),
            "lab",
            "--no-browser",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            # (--ServerApp.token works too but is deprecated in jupyter_server 2)
            f"--IdentityProvider.token={self.token}",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.root_dir={self.nbdir}",
            "--LabApp.expose_app_in_browser=True",
            f"--LabApp.user_settings_dir={settings}",
            f"--LabApp.workspaces_dir={os.path.join(self.tmp, 'workspaces')}",
            "--LabApp.news_url=None",
            "--LabApp.extension_manager=readonly",
            # JupyterLab creates a checkpoint on open; keep it out of the
            # notebook's folder (default: NBDIR/.ipynb_checkpoints/)
            f"--FileCheckpoints.checkpoint_dir={os.path.join(self.tmp, 'checkpoints')}",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")  # containers often run as root
        env = dict(os.environ)
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env["JUPYTER_RUNTIME_DIR"] = runtime
        env.pop("JUPYTER_TOKEN", None)
        self.logf = open(self.logpath, "w")  # noqa: SIM115 (kept open for the server's lifetime)
        # own session/process group so we can stop the server AND its kernels
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.nbdir,
            stdin=subprocess.DEVNULL,
            stdout=self.logf,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log(f"jupyter lab pid={self.proc.pid} port={self.port} (log: {self.logpath})")
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited early rc={self.proc.returncode}")
            try:
                if http(self.base + "/api/status", self.token, timeout=2)[0] == 200:
                    return
            except Exception:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"jupyter lab not ready after {wait_s}s")

    def log_tail(self, n=30):
        try:
            with open(self.logpath) as f:
                return "".join(f.readlines()[-n:])
        except Exception:
            return ""

    def stop(self):
        if not self.proc or self.proc.poll() is not None:
            return
        try:  # clean shutdown: server stops its kernels, then exits
            http(self.base + "/api/shutdown", self.token, method="POST", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
                try:
                    os.killpg(self.proc.pid, sig)  # group led by OUR server pid
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        # kernels live in the same process group; make sure none survive
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        log(f"jupyter lab stopped rc={self.proc.returncode}")


# --------------------------------------------------------------------------
# JavaScript snippets evaluated in the page (window.jupyterapp is exposed by
# --LabApp.expose_app_in_browser=True)
JS_NB_READY = """() => {
  const app = window.jupyterapp; if (!app || !app.shell) return 'no-app';
  const w = app.shell.currentWidget;
  if (!w || !w.content || !w.sessionContext) return 'no-notebook';
  if (!w.context.isReady) return 'context-loading';
  const sc = w.sessionContext;
  if (!sc.isReady) return 'session-starting';
  const k = sc.session && sc.session.kernel;
  if (!k) return 'no-kernel';
  if (k.connectionStatus !== 'connected') return 'kernel-' + k.connectionStatus;
  if (sc.kernelDisplayStatus !== 'idle') return 'kernel-' + sc.kernelDisplayStatus;
  return 'ready';
}"""

JS_INSTALL_MONITOR = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const k = w.sessionContext.session.kernel;
  const m = window.__nbshot = {inputs: 0, errors: 0, status: k.status, died: null};
  // kernel crash (os._exit, segfault, OOM-kill) -> JupyterLab auto-restarts it
  w.sessionContext.statusChanged.connect((_, s) => {
    if (['autorestarting', 'restarting', 'dead'].includes(s)) m.died = m.died || s;
  });
  k.iopubMessage.connect((_, msg) => {
    const t = msg.header.msg_type;
    if (t === 'execute_input') m.inputs++;
    else if (t === 'error') m.errors++;
    else if (t === 'status') m.status = msg.content.execution_state;
  });
  window.jupyterapp.shell.collapseLeft && window.jupyterapp.shell.collapseLeft();
  window.jupyterapp.shell.collapseRight && window.jupyterapp.shell.collapseRight();
  return w.content.widgets.filter(c => c.model.type === 'code' &&
                                  c.model.sharedModel.getSource().trim()).length;
}"""

JS_PROGRESS = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const m = window.__nbshot;
  const prompts = [...w.node.querySelectorAll('.jp-InputPrompt')].map(p => p.textContent);
  return {inputs: m.inputs, errors: m.errors, status: m.status, died: m.died,
          display: w.sessionContext.kernelDisplayStatus,
          running: prompts.filter(t => t.includes('*')).length};
}"""

JS_REPORT = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const WV = 'application/vnd.jupyter.widget-view+json';
  const cells = [];
  w.content.widgets.forEach((cell, i) => {
    if (cell.model.type !== 'code') return;
    const outs = cell.model.outputs.toJSON();
    const nodes = cell.outputArea ? cell.outputArea.widgets : [];
    const prompt = cell.node.querySelector('.jp-InputPrompt');
    const rec = {index: i, count: cell.model.executionCount, errors: [],
                 running: !!(prompt && prompt.textContent.includes('*')),
                 stderr: [], widget_outputs: 0, widget_rendered: 0, widget_disconnected: 0,
                 widget_fallback: []};
    outs.forEach((o, j) => {
      const child = nodes[j];
      const el = child && child.node;
      const rendered = el ? el.querySelector('.jp-OutputArea-output[data-mime-type]') : null;
      const mime = rendered ? rendered.getAttribute('data-mime-type') : null;
      const outEl = el ? (el.querySelector('.jp-OutputArea-output') || el) : null;
      const text = outEl ? outEl.innerText : '';
      if (o.output_type === 'error') {
        rec.errors.push({ename: o.ename, evalue: o.evalue, dom_text: text});
      } else if (o.output_type === 'stream' && o.name === 'stderr') {
        rec.stderr.push(text || o.text);
      } else if (o.data && o.data[WV]) {
        rec.widget_outputs++;
        // a live widget view is a Panel holding .jupyter-widgets nodes and no
        // data-mime-type; without the widget manager JupyterLab falls back to
        // text/plain ("IntProgress(value=0, ...)")
        const ok = el && !mime && el.querySelector('.jupyter-widgets') &&
                   !el.querySelector('.widget-error') &&
                   !/Error displaying widget|Loading widget/.test(text);
        if (ok && el.querySelector('.jupyter-widgets-disconnected')) rec.widget_disconnected++;
        if (ok) rec.widget_rendered++;
        else rec.widget_fallback.push((mime || 'widget-view') + ': ' + text.slice(0, 200));
      }
    });
    cells.push(rec);
  });
  return cells;
}"""

JS_CONTENT_EXTRA = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  let best = null;
  for (const el of [w.content.node, ...w.content.node.querySelectorAll('*')]) {
    const cs = getComputedStyle(el);
    if (/(auto|scroll)/.test(cs.overflowY) && el.scrollHeight > el.clientHeight + 2 &&
        (!best || el.scrollHeight > best.scrollHeight)) best = el;
  }
  if (!best) return 0;
  best.scrollTop = 0;
  return best.scrollHeight - best.clientHeight;
}"""


def dismiss_dialogs(page):
    """Accept any modal (e.g. 'Select Kernel') so the run can proceed."""
    dlg = page.locator(".jp-Dialog .jp-mod-accept")
    if dlg.count():
        title = (
            page.locator(".jp-Dialog-header").first.inner_text() if page.locator(".jp-Dialog-header").count() else "?"
        )
        log(f"accepting dialog: {title!r}")
        dlg.first.click()
        return True
    return False


def run_all_via_menu(page):
    try:
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).first.click(timeout=5000)
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).first.click(timeout=5000)
        return "menu Run > Run All Cells"
    except Exception as e:  # fall back to the command registry
        log(f"menu click failed ({e.__class__.__name__}); using command runmenu:run-all")
        page.keyboard.press("Escape")
        page.evaluate("() => window.jupyterapp.commands.execute('runmenu:run-all')")
        return "command runmenu:run-all"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebook")
    ap.add_argument("out_png")
    ap.add_argument("--timeout", type=float, default=120, help="seconds allowed for executing all cells (default 120)")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument(
        "--max-height", type=int, default=16000, help="cap on screenshot height in px (Chromium limit ~16k)"
    )
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument(
        "--strict-widgets", action="store_true", help="exit 4 if any widget output did not render as a widget"
    )
    ap.add_argument(
        "--mid-shot",
        type=float,
        metavar="SECS",
        help="also save OUT-mid.png SECS seconds after Run All (to see progress bars in flight)",
    )
    ap.add_argument(
        "--no-run",
        action="store_true",
        help="do not execute; just render the saved outputs (e.g. to view what nbmake/nbconvert stored)",
    )
    ap.add_argument(
        "--comms-over-subshells",
        choices=["disabled", "perComm", "perCommTarget"],
        help="JupyterLab 4.4+ setting: send comm messages to kernel subshells (ipykernel 7+) or not",
    )
    ap.add_argument("--keep-tmp", action="store_true")
    ap.add_argument("--dump-html", metavar="FILE", help="also save the notebook panel's rendered HTML (debugging)")
    args = ap.parse_args()

    nb = os.path.abspath(args.notebook)
    out = os.path.abspath(args.out_png)
    if not os.path.isfile(nb):
        sys.exit(f"no such notebook: {nb}")
    nbdir, nbname = os.path.dirname(nb), os.path.basename(nb)
    tmp = tempfile.mkdtemp(prefix="nbshot-")
    if args.comms_over_subshells:
        LAB_SETTINGS["@jupyterlab/apputils-extension/kernels-settings.jupyterlab-settings"] = {
            "commsOverSubshells": args.comms_over_subshells
        }
    server = Server(nbdir, tmp)
    rc = 3
    timings = {}

    from playwright.sync_api import sync_playwright

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)

    ctx = None
    try:
        t = time.monotonic()
        server.start()
        timings["server_start"] = time.monotonic() - t
        log(f"server ready in {timings['server_start']:.1f}s")
        with sync_playwright() as p:
            t = time.monotonic()
            ctx = p.chromium.launch_persistent_context(
                os.path.join(tmp, "chromium-profile"),  # fresh user-data-dir
                executable_path=args.chromium,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": args.width, "height": 900},
                device_scale_factor=1,
            )
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            console_errors = []
            page.on("pageerror", lambda e: console_errors.append(f"pageerror: {e}"))
            page.on("console", lambda m: m.type == "error" and console_errors.append(f"console.error: {m.text}"))
            url = f"{server.base}/lab/tree/{urllib.parse.quote(nbname)}?token={server.token}"
            log(f"opening {server.base}/lab/tree/{nbname}")
            page.goto(url, wait_until="domcontentloaded", timeout=60000)
            state, deadline = None, time.monotonic() + 90
            while time.monotonic() < deadline:
                dismiss_dialogs(page)
                new = page.evaluate(JS_NB_READY)
                if new != state:
                    log(f"notebook state: {new}")
                    state = new
                if state == "ready":
                    break
                time.sleep(0.25)
            else:
                raise RuntimeError(f"notebook/kernel never became ready (last: {state})")
            timings["browser_lab_kernel"] = time.monotonic() - t

            ncode = page.evaluate(JS_INSTALL_MONITOR)
            time.sleep(0.5)  # let widget manager register its comm target
            t = time.monotonic()
            if args.no_run:
                how, ncode = "nothing (--no-run)", 0
            else:
                how = run_all_via_menu(page)
            log(f"running {ncode} code cells via {how}")
            deadline = t + args.timeout
            stable, last, timed_out, kernel_died = 0, None, False, None
            mid_png = (os.path.splitext(out)[0] + "-mid.png") if args.mid_shot else None
            while True:
                dismiss_dialogs(page)
                pr = page.evaluate(JS_PROGRESS)
                if pr != last:
                    log(f"progress: {pr}")
                    last = pr
                done = args.no_run or (
                    pr["running"] == 0
                    and pr["status"] == "idle"
                    and pr["display"] == "idle"
                    and (pr["inputs"] >= ncode or pr["errors"] > 0)
                )
                if pr["died"]:
                    log(f"KERNEL DIED during execution ({pr['died']})")
                    kernel_died = pr["died"]
                    time.sleep(2)  # let the restart dialog / prompts settle
                    dismiss_dialogs(page)
                    break
                stable = stable + 1 if done else 0
                if stable >= 4:  # ~1s of quiescence
                    break
                if mid_png and time.monotonic() - t >= args.mid_shot:
                    page.screenshot(path=mid_png)
                    log(f"mid-run screenshot -> {mid_png}")
                    mid_png = None
                if time.monotonic() > deadline:
                    timed_out = True
                    log(f"TIMEOUT after {args.timeout}s; taking screenshot anyway")
                    break
                time.sleep(0.25)
            timings["execute"] = time.monotonic() - t

            # give widget views a moment to paint their final state
            time.sleep(1.0)
            page.evaluate("() => document.fonts.ready")
            t = time.monotonic()
            extra = page.evaluate(JS_CONTENT_EXTRA)
            height = min(900 + extra + 40, args.max_height)
            if 900 + extra + 40 > args.max_height:
                log("WARNING: notebook taller than --max-height; screenshot truncated")
            page.set_viewport_size({"width": args.width, "height": int(height)})
            time.sleep(0.8)
            page.evaluate(JS_CONTENT_EXTRA)  # re-measure / scroll to top
            page.screenshot(path=out, full_page=True)
            timings["screenshot"] = time.monotonic() - t
            log(f"screenshot {args.width}x{int(height)} -> {out}")

            report = page.evaluate(JS_REPORT)
            if args.dump_html:
                with open(args.dump_html, "w") as f:
                    f.write(page.evaluate("() => window.jupyterapp.shell.currentWidget.node.outerHTML"))
            ctx.close()
            ctx = None

        n_err = 0
        w_total = w_ok = w_disc = 0
        for c in report:
            w_disc += c["widget_disconnected"]
            w_total += c["widget_outputs"]
            w_ok += c["widget_rendered"]
            for e in c["errors"]:
                n_err += 1
                print(f"\n=== ERROR in cell {c['index']} [{c['count']}]: {e['ename']}: {e['evalue']}")
                print(ANSI.sub("", e["dom_text"]).rstrip())
            for s in c["stderr"]:
                print(f"--- stderr from cell {c['index']}: {s.strip()[:500]}")
            for f in c["widget_fallback"]:
                print(f"!!! widget in cell {c['index']} NOT rendered as widget: {f}")
        seen = {}
        for m in console_errors:
            seen[m[:300]] = seen.get(m[:300], 0) + 1
        for m, n in list(seen.items())[:20]:
            print(f"--- browser {m}" + (f"  (x{n})" if n > 1 else ""))
        if timed_out:
            print(f"still running/queued at timeout: cells {[c['index'] for c in report if c['running']]}")
        print(f"\ncells: {len(report)} code, executed counts: {[c['count'] for c in report]}")
        print(
            f"widget outputs rendered as widgets: {w_ok}/{w_total}"
            + (f" ({w_disc} restored from saved state, not connected to a kernel)" if w_disc else "")
        )
        print("timings: " + ", ".join(f"{k}={v:.1f}s" for k, v in timings.items()))
        if kernel_died:
            print(f"\n=== ERROR: kernel died while running cells ({kernel_died})")
        if timed_out:
            rc = 2
        elif n_err or kernel_died:
            rc = 1
        elif args.strict_widgets and w_ok < w_total:
            rc = 4
        else:
            rc = 0
    except KeyboardInterrupt as e:
        log(f"interrupted: {e}")
        rc = 130
    except Exception as e:
        log(f"FAILED: {e.__class__.__name__}: {e}")
        tail = server.log_tail()
        if tail:
            print("---- jupyter server log tail ----\n" + tail)
        rc = 3
    finally:
        if ctx is not None:
            try:
                ctx.close()
            except Exception:
                pass
        server.stop()
        if not args.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        log(f"exit {rc} (total {time.monotonic() - T0:.1f}s)")
    return rc


if __name__ == "__main__":
    sys.exit(main())
