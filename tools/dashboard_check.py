#!/usr/bin/env python3
"""Checks the `ferrolm serve --runs` page in a real browser (headless Chromium + selenium).

Makes a runs directory with two runs, serves it, and checks in the browser that both runs' loss
curves are drawn (the uPlot chart holds each run's train and val points, and its canvas has pixels
of each run's colour), that a line appended to one run's metrics.jsonl shows up as a new point
within a few polls, that another curve (grad norm vs tokens) can be chosen, (with --checkpoint)
that the playground streams a completion, and (with --api-key) that the page asks for the key,
shows nothing before it, and keeps it across a reload. With --live, it also trains a tiny model
with `ferrolm train --serve-dashboard` and watches its curve grow on the printed URL. Saves
screenshots and prints their paths.

Needs: Debian's chromium and chromium-driver, `pip install selenium`.
Usage: tools/dashboard_check.py [--bin target/release/ferrolm] [--checkpoint RUN_OR_CKPT]
                                [--api-key KEY] [--live] [--out DIR]
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


def line(step, train, val=None):
    return json.dumps({"step": step, "tokens": step * 64, "wall_s": step * 0.5, "train_loss": train,
                       "val_loss": val, "lr": 1e-3, "grad_norm": 1.0, "tokens_per_s": 100.0}) + "\n"


def make_runs(root):
    for name, offset in [("alpha", 0.0), ("beta", 0.3)]:
        d = os.path.join(root, name)
        os.makedirs(d)
        with open(os.path.join(d, "metrics.jsonl"), "w") as f:
            for s in range(1, 6):
                f.write(line(s * 10, 6.0 - s * 0.3 + offset, 6.1 - s * 0.3 + offset if s % 2 == 0 else None))
    with open(os.path.join(root, "beta", "samples.txt"), "w") as f:
        f.write("Once upon a time, a dashboard test.\n")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_until(what, fn, timeout=20.0):
    end = time.time() + timeout
    while time.time() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.2)
    raise SystemExit(f"FAIL: {what} (waited {timeout:.0f} s)")


COLOR = {"alpha": (0x1f, 0x77, 0xb4), "beta": (0xd6, 0x27, 0x28)}  # the page's first two colours


def points(driver, run, kind="train"):
    """How many points the uPlot chart holds for the series "RUN KIND" (0: no such series)."""
    return driver.execute_script("""
        const p = window.dashPlot;
        if (!p) return 0;
        const i = p.series.findIndex(s => s.label === arguments[0]);
        return i < 1 ? 0 : p.data[i].filter(v => v !== null && v !== undefined).length;
    """, f"{run} {kind}")


def colored_pixels(driver, rgb):
    """Pixels of the chart's canvas within a small distance of colour `rgb`."""
    return driver.execute_script("""
        const c = document.querySelector("#chart canvas");
        if (!c) return 0;
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        const [r, g, b] = arguments[0];
        let n = 0;
        for (let i = 0; i < d.length; i += 4)
            if (d[i + 3] > 200 && Math.abs(d[i] - r) + Math.abs(d[i + 1] - g) + Math.abs(d[i + 2] - b) < 60) n++;
        return n;
    """, list(rgb))


def browser(profile):
    opts = Options()
    for a in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run",
              "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1000,1300"]:
        opts.add_argument(a)
    opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    service = Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(service=service, options=opts)


def live_training(binary, work, driver, out_dir):
    """`ferrolm train --serve-dashboard 0` on a tiny corpus: the printed URL shows the run as
    running, its curve grows while it trains, Ctrl-C stops the run (130) and the page with it."""
    d = os.path.join(work, "live")
    os.makedirs(d)
    corpus = os.path.join(d, "corpus.txt")
    with open(corpus, "w") as f:
        f.write("the cat sat on the mat. the dog ran to the cat. they were happy together.<|endoftext|>\n" * 300)
    tok, ids = os.path.join(d, "tok"), os.path.join(d, "ids.npy")
    subprocess.run([binary, "tokenizer", "train", "--input", corpus, "--vocab-size", "300",
                    "--special-token", "<|endoftext|>", "--out", tok], check=True, capture_output=True)
    subprocess.run([binary, "tokenizer", "encode", "--tokenizer", tok, "--input", corpus, "--output", ids],
                   check=True, capture_output=True)
    cmd = [binary, "train", "--train", ids, "--valid", ids, "--tokenizer", tok, "--no-progress",
           "--run-dir", os.path.join(d, "runs", "live"), "--steps", "1000000", "--serve-dashboard", "0"]
    for kv in ["model.d_model=32", "model.n_layers=2", "model.n_heads=4", "model.d_ff=64",
               "model.context_length=16", "data.batch_size=4", "logging.every=10", "eval.every=100",
               "eval.batches=2", "checkpoint.every=0"]:
        cmd += ["--set", kv]
    trainer = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines, url = [], []

    def drain():
        for ln in trainer.stderr:
            lines.append(ln)
            if ln.startswith("dashboard: http://"):
                url.append(ln.split()[1])
    threading.Thread(target=drain, daemon=True).start()
    try:
        wait_until("the dashboard URL printed", lambda: url, 60)
        assert url[0].endswith("/?run=live"), url[0]
        driver.get(url[0])
        state = lambda: driver.execute_script(
            "const r = document.querySelector('#runs tbody tr'); return r ? r.cells[2].textContent : ''")
        wait_until("the run shown as running", lambda: state() == "running", 30)
        n1 = wait_until("the run's first points", lambda: points(driver, "live"), 30)
        n2 = wait_until("more points while it trains", lambda: points(driver, "live") > n1 and points(driver, "live"), 15)
        wait_until("its curve on the canvas", lambda: colored_pixels(driver, COLOR["alpha"]) > 100, 10)
        print(f"ok: train --serve-dashboard: the run is shown running, its curve grew from {n1} to {n2} points")
        shot = os.path.join(out_dir, "dashboard-live.png")
        driver.save_screenshot(shot)
        print(f"screenshot: {shot}")
    finally:
        trainer.send_signal(2)
        rc = trainer.wait(timeout=60)
    time.sleep(0.5)
    text = "".join(lines)
    assert rc == 130, f"Ctrl-C: exit {rc}, expected 130\n{text}"
    assert "dashboard stopped" in text, text
    try:
        urllib.request.urlopen(url[0], timeout=2)
        raise SystemExit("FAIL: the page is still served after training stopped")
    except OSError:
        pass
    print("ok: Ctrl-C stopped the run (exit 130) and its page")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default="target/release/ferrolm")
    ap.add_argument("--checkpoint", help="also check the playground streams from this model")
    ap.add_argument("--api-key", help="start the server with this key; the page must ask for it")
    ap.add_argument("--live", action="store_true",
                    help="also train a tiny model with --serve-dashboard and watch it grow")
    ap.add_argument("--out", help="where to save the screenshot (default: a new temp directory)")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="ferrolm-dash-")
    runs = os.path.join(work, "runs")
    make_runs(runs)
    port = free_port()
    cmd = [os.path.realpath(a.bin), "serve", "--runs", runs, "--port", str(port)]
    if a.checkpoint:
        cmd += ["--checkpoint", a.checkpoint]
    if a.api_key:
        cmd += ["--api-key", a.api_key]
    server = subprocess.Popen(cmd)
    driver = None
    try:
        base = f"http://127.0.0.1:{port}"

        def up():
            try:
                return urllib.request.urlopen(base + "/", timeout=1).status == 200
            except OSError:
                return False
        wait_until("the server answers", up, 60)
        driver = browser(os.path.join(work, "profile"))
        driver.get(base + "/")
        if a.api_key:
            form = driver.find_element(By.ID, "key-form")
            wait_until("the page asks for the API key", lambda: form.is_displayed(), 10)
            assert not driver.find_elements(By.CSS_SELECTOR, "#runs tbody tr"), "runs shown before the key"
            assert not driver.find_element(By.ID, "runs-section").is_displayed()
            driver.find_element(By.ID, "api-key").send_keys("wrong-" + a.api_key)
            driver.find_element(By.ID, "key-submit").click()
            wait_until("a wrong key is refused",
                       lambda: "refused" in driver.find_element(By.ID, "key-why").text, 10)
            driver.find_element(By.ID, "api-key").clear()
            driver.find_element(By.ID, "api-key").send_keys(a.api_key)
            driver.find_element(By.ID, "key-submit").click()
            wait_until("the key form goes away", lambda: not form.is_displayed(), 10)
            print("ok: the page asked for the API key, refused a wrong one and took the right one")
        else:
            assert not driver.find_element(By.ID, "key-form").is_displayed(), "asks for a key no one set"
        for run in ["alpha", "beta"]:
            wait_until(f"{run}'s train curve drawn", lambda: points(driver, run) == 5)
            wait_until(f"{run}'s val curve drawn", lambda: points(driver, run, "val") == 2)
            wait_until(f"{run}'s colour on the canvas", lambda: colored_pixels(driver, COLOR[run]) > 200)
            n = colored_pixels(driver, COLOR[run])
            print(f"ok: {run}: 5 train and 2 val points in the chart, {n} pixels of its colour on the canvas")
        rows = driver.find_elements(By.CSS_SELECTOR, "#runs tbody tr")
        assert len(rows) == 2, f"expected 2 rows in the runs table, got {len(rows)}"
        if a.api_key:
            driver.refresh()
            wait_until("the stored key used after a reload", lambda: points(driver, "alpha") == 5, 10)
            assert not driver.find_element(By.ID, "key-form").is_displayed()
            print("ok: the stored key was used after a reload")
        with open(os.path.join(runs, "alpha", "metrics.jsonl"), "a") as f:
            f.write(line(60, 4.0, 4.1))
        wait_until("the appended point appears", lambda: points(driver, "alpha") == 6, 10)
        wait_until("the appended val point appears", lambda: points(driver, "alpha", "val") == 3, 10)
        print("ok: a line appended to alpha/metrics.jsonl appeared on the page")
        driver.find_element(By.CSS_SELECTOR, '#runs tbody tr:nth-child(2) a').click()
        wait_until("beta's samples shown",
                   lambda: "dashboard test" in driver.find_element(By.ID, "samples").text, 10)
        print("ok: samples shown")
        from selenium.webdriver.support.ui import Select
        Select(driver.find_element(By.ID, "ymetric")).select_by_value("grad_norm")
        Select(driver.find_element(By.ID, "xmetric")).select_by_value("tokens")
        wait_until("the grad-norm curve vs tokens", lambda: points(driver, "alpha", "grad_norm") == 6, 5)
        xs = driver.execute_script("return window.dashPlot.data[0]")
        assert xs == [s * 640 for s in range(1, 7)], f"x is not tokens: {xs}"
        axes = driver.execute_script("return window.dashPlot.axes.map(a => a.label)")
        assert axes == ["tokens", "grad norm"], axes
        Select(driver.find_element(By.ID, "ymetric")).select_by_value("loss")
        Select(driver.find_element(By.ID, "xmetric")).select_by_value("step")
        wait_until("the loss curve again", lambda: points(driver, "alpha") == 6, 5)
        print("ok: other curves (grad norm vs tokens) drawn")
        # A drag zooms in; a new point keeps the zoom; a double-click follows the whole run again.
        from selenium.webdriver.common.action_chains import ActionChains
        over = driver.find_element(By.CSS_SELECTOR, "#chart .u-over")
        w = over.size["width"]
        ActionChains(driver).move_to_element_with_offset(over, -w // 4, 0).click_and_hold() \
            .move_by_offset(w // 4, 0).release().perform()
        x_max = lambda: driver.execute_script("return window.dashPlot.scales.x.max")
        zoomed = wait_until("the drag zooms in", lambda: (x_max() or 99) < 50 and x_max(), 5)
        with open(os.path.join(runs, "alpha", "metrics.jsonl"), "a") as f:
            f.write(line(70, 3.9))
        wait_until("the point after the zoom appears", lambda: points(driver, "alpha") == 7, 10)
        assert x_max() == zoomed, f"a new point undid the zoom: x max {x_max()} != {zoomed}"
        ActionChains(driver).double_click(over).perform()
        wait_until("a double-click shows the whole run", lambda: x_max() == 70, 5)
        print(f"ok: zoomed to x <= {zoomed:.1f}, kept while a point arrived, double-click showed all")
        driver.find_element(By.ID, "logy").click()
        wait_until("a log y scale", lambda: driver.execute_script("return window.dashPlot.scales.y.distr") == 3, 5)
        assert points(driver, "alpha") == 7
        print("ok: log scale")
        if a.checkpoint:
            pg = driver.find_element(By.ID, "playground")
            wait_until("the playground is shown", lambda: pg.is_displayed(), 10)
            driver.find_element(By.ID, "max_tokens").clear()
            driver.find_element(By.ID, "max_tokens").send_keys("24")
            driver.find_element(By.ID, "generate").click()
            out = wait_until("a streamed completion",
                             lambda: (driver.find_element(By.ID, "generate").is_enabled()
                                      and driver.find_element(By.ID, "output").text), 60)
            assert not out.startswith("error"), out
            print(f"ok: the playground streamed {out!r}")
        out_dir = a.out or tempfile.mkdtemp(prefix="ferrolm-dash-shot-")
        os.makedirs(out_dir, exist_ok=True)
        shot = os.path.join(out_dir, "dashboard.png")
        driver.save_screenshot(shot)
        print(f"screenshot: {shot}")
        if a.live:
            live_training(os.path.realpath(a.bin), work, driver, out_dir)
        print("dashboard check: ok")
    finally:
        if driver is not None:
            driver.quit()
        server.send_signal(2)
        server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
