#!/usr/bin/env python3
"""Checks the `ferrolm serve --runs` page in a real browser (headless Chromium + selenium).

Makes a runs directory with two runs, serves it, and checks in the browser that both runs' loss
curves are drawn (non-empty SVG paths), that a line appended to one run's metrics.jsonl shows up as
a new point within a few polls, that another curve (grad norm vs tokens) can be chosen, and (with --checkpoint) that the playground streams a completion.
Saves a screenshot and prints its path.

Needs: Debian's chromium and chromium-driver, `pip install selenium`.
Usage: tools/dashboard_check.py [--bin target/release/ferrolm] [--checkpoint RUN_OR_CKPT] [--out DIR]
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
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


def points(driver, run, kind="train"):
    els = driver.find_elements(By.CSS_SELECTOR, f'#chart path[data-run="{run}"][data-kind="{kind}"]')
    if not els or not (els[0].get_attribute("d") or "").startswith("M"):
        return 0
    return int(els[0].get_attribute("data-points"))


def browser(profile):
    opts = Options()
    for a in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run",
              "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1000,1300"]:
        opts.add_argument(a)
    opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    service = Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(service=service, options=opts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default="target/release/ferrolm")
    ap.add_argument("--checkpoint", help="also check the playground streams from this model")
    ap.add_argument("--out", help="where to save the screenshot (default: a new temp directory)")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="ferrolm-dash-")
    runs = os.path.join(work, "runs")
    make_runs(runs)
    port = free_port()
    cmd = [os.path.realpath(a.bin), "serve", "--runs", runs, "--port", str(port)]
    if a.checkpoint:
        cmd += ["--checkpoint", a.checkpoint]
    server = subprocess.Popen(cmd)
    driver = None
    try:
        base = f"http://127.0.0.1:{port}"

        def up():
            try:
                return urllib.request.urlopen(base + "/api/info", timeout=1).status == 200
            except OSError:
                return False
        wait_until("the server answers", up, 60)
        driver = browser(os.path.join(work, "profile"))
        driver.get(base + "/")
        for run in ["alpha", "beta"]:
            wait_until(f"{run}'s train curve drawn", lambda: points(driver, run) == 5)
            wait_until(f"{run}'s val curve drawn", lambda: points(driver, run, "val") == 2)
        rows = driver.find_elements(By.CSS_SELECTOR, "#runs tbody tr")
        assert len(rows) == 2, f"expected 2 rows in the runs table, got {len(rows)}"
        print("ok: both runs listed, both curves drawn (5 train, 2 val points each)")
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
        Select(driver.find_element(By.ID, "ymetric")).select_by_value("loss")
        Select(driver.find_element(By.ID, "xmetric")).select_by_value("step")
        wait_until("the loss curve again", lambda: points(driver, "alpha") == 6, 5)
        print("ok: other curves (grad norm vs tokens) drawn")
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
        print("dashboard check: ok")
    finally:
        if driver is not None:
            driver.quit()
        server.send_signal(2)
        server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
