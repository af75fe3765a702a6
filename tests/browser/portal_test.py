#!/usr/bin/python3
# The citizen's portal in a real headless browser (issue 12): enrol from a code, give and withdraw consent through the pages, axe-core on every page.
#
# Starts two kring-node processes on loopback (the municipality with --portal,
# and a care provider), drives Chromium through chromedriver with Selenium,
# and checks what a citizen relies on. Run by ctest; exits non-zero on any
# failure. Needs Debian's chromium, chromium-driver, python3-selenium and
# axe-core in tests/browser/node_modules (scripts/bootstrap.sh installs them).
import argparse
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

FAILURES = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        FAILURES.append(what)
    return ok


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout=20.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if pred():
                return True
        except Exception:  # a node still starting, a page still drawing
            pass
        time.sleep(0.1)
    return False


class Node:
    def __init__(self, binary, root, org, name, portal=False):
        self.binary, self.org, self.name = binary, org, name
        self.data = os.path.join(root, org)
        self.sync, self.api = free_port(), free_port()
        self.portal = free_port() if portal else None
        self.card = self.cli("init", "--data", self.data, "--org", org, "--name", name)
        self.token = self.cli("token", "--data", self.data, "--client", "browser-test").splitlines()[0]
        self.proc = None
        self.log = open(os.path.join(root, org + ".log"), "wb")

    def cli(self, *args, stdin=None):
        r = subprocess.run([self.binary, *args], input=stdin, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("kring-node %s failed: %s" % (args[0], r.stderr))
        return r.stdout

    def peer(self, other):
        self.cli("peer", "add", "--data", self.data, "--card", "-", "--endpoint",
                 "tcp://127.0.0.1:%d" % other.sync, stdin=other.card)

    def start(self):
        args = [self.binary, "run", "--data", self.data, "--listen", "tcp://127.0.0.1:%d" % self.sync,
                "--api", "127.0.0.1:%d" % self.api, "--sync-interval-ms", "250"]
        if self.portal:
            args += ["--portal", "127.0.0.1:%d" % self.portal]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self.log)
        if not wait_for(lambda: self.call("GET", "/v1/health")[0] == 200, 15):
            raise RuntimeError(self.org + " did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def call(self, method, path, body=None):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.api, path), method=method,
                                     data=None if body is None else json.dumps(body).encode())
        req.add_header("Authorization", "Bearer " + self.token)
        req.add_header("X-Kring-Actor", "anne")
        req.add_header("X-Kring-Actor-Name", "Anne de Wit")
        req.add_header("X-Kring-Role", "regisseur")
        if body is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def fragments_held(self):
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(self.data, "kring.db"), uri=True, timeout=5)
        try:
            return db.execute("SELECT COUNT(*) FROM records WHERE type = 1").fetchone()[0]
        finally:
            db.close()


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--lang=nl-NL",
              "--window-size=1024,900"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=opts)
    d.set_script_timeout(60)
    return d


def loaded(d):
    return WebDriverWait(d, 20).until(lambda d: d.execute_script("return document.body.dataset.klaar === 'ja'"))


def axe(d, axe_source, page):
    d.execute_script(axe_source)
    result = d.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})"
        ".then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help}))))"
        ".catch(e => done([{id: 'axe-error', impact: 'critical', nodes: 0, help: String(e)}]));")
    bad = [v for v in result if v["impact"] in ("serious", "critical")]
    check(not bad, "axe-core: no serious or critical WCAG 2.1 AA violation on %s %s" % (page, json.dumps(bad) if bad else ""))


def narrow(d, page):
    # 320 CSS pixels wide (WCAG 1.4.10 reflow): nothing scrolls sideways.
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": 320, "height": 800, "deviceScaleFactor": 1, "mobile": True})
    time.sleep(0.2)
    width = d.execute_script("return document.documentElement.scrollWidth")
    check(width <= 320, "%s fits 320 px wide (scrollWidth %d)" % (page, width))
    d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def labelled(d, words):
    for label in d.find_elements(By.TAG_NAME, "label"):
        if all(w in label.text.lower() for w in words):
            return d.find_element(By.ID, label.get_attribute("for"))
    raise AssertionError("no field labelled %r" % (words,))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--node", required=True)
    ap.add_argument("--axe", required=True)
    args = ap.parse_args()
    if not os.path.exists(args.axe):
        print("axe-core is missing at %s: run scripts/bootstrap.sh" % args.axe)
        return 1
    axe_source = open(args.axe).read()
    root = tempfile.mkdtemp(prefix="kring-browser-")
    gemeente = Node(args.node, root, "gemeente", "Gemeente Deventer", portal=True)
    zorg = Node(args.node, root, "zorg", "Zorg B")
    gemeente.peer(zorg)
    zorg.peer(gemeente)
    drivers = []
    try:
        gemeente.start()
        zorg.start()
        st, case = gemeente.call("POST", "/v1/cases", {"label": "huishouden"})
        case = case["case"]
        st, _ = gemeente.call("POST", "/v1/cases/%s/items" % case, {
            "kind": "goal", "domain": "housing", "data": {"description": "Een betaalbare woning vinden", "status": "active"}})
        check(st == 201, "the regie organisation writes a goal in housing (%s)" % st)
        st, inv = gemeente.call("POST", "/v1/cases/%s/citizen-invitations" % case, {"given_by": "burger"})
        check(st == 201, "the regie organisation gets a one-time code (%s)" % st)
        code = inv["code"]
        portal = "http://127.0.0.1:%d" % gemeente.portal

        d = browser()
        drivers.append(d)
        d.get(portal + "/")
        loaded(d)
        check(d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "nl", "the start page is in Dutch (lang=nl)")
        axe(d, axe_source, "the start page")
        narrow(d, "the start page")
        d.get(portal + "/mijn-plan")
        check(d.current_url.rstrip("/") == portal, "without a session, Mijn plan leads back to the start page")
        loaded(d)

        # Enrol by keyboard: type the code, press Enter.
        field = labelled(d, ["code"])
        field.send_keys(code.lower().replace("-", " "))
        field.send_keys(Keys.ENTER)
        check(wait_for(lambda: d.current_url.endswith("/mijn-plan")), "the citizen enrols from the code and lands on Mijn plan")
        loaded(d)
        body = d.find_element(By.TAG_NAME, "main").text
        check("Uw regisseur" in body and "Gemeente Deventer" in body, "Mijn plan names the regisseur and how to reach them")
        check("Een betaalbare woning vinden" in body and "Huisvesting" in body, "Mijn plan shows the goal by its Dutch life domain")
        axe(d, axe_source, "Mijn plan")
        narrow(d, "Mijn plan")
        key_extractable = d.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "const r = indexedDB.open('kring-portaal', 1);"
            "r.onsuccess = () => { const g = r.result.transaction('sleutels').objectStore('sleutels').get('apparaat');"
            "g.onsuccess = () => done([g.result.sleutels.privateKey.extractable, g.result.sleutels.privateKey.algorithm.name]); };")
        check(key_extractable == [False, "Ed25519"], "the device key is Ed25519 and not extractable, kept in IndexedDB")

        # The regie organisation can no longer grant without the citizen.
        st, err = gemeente.call("POST", "/v1/cases/%s/consents" % case, {
            "grantee": "zorg", "domains": ["housing"], "purpose": "p", "basis": "Wmo 2015", "valid_from": "2020-01-01",
            "given_by": "burger", "evidence": {"kind": "attested", "reference": "formulier"}})
        check(st == 403 and "citizen" in err.get("message", ""), "the regie organisation's unsigned grant is refused (%s)" % st)

        # Wie mag wat zien: give consent through the form.
        d.find_element(By.LINK_TEXT, "Wie mag wat zien").click()
        WebDriverWait(d, 20).until(lambda d: d.current_url.endswith("/wie-mag-wat-zien"))
        loaded(d)
        axe(d, axe_source, "Wie mag wat zien")
        narrow(d, "Wie mag wat zien")
        Select(labelled(d, ["organisatie"])).select_by_visible_text("Zorg B")
        labelled(d, ["huisvesting"]).click()
        labelled(d, ["waarvoor"]).send_keys("Hulp bij het zoeken naar een woning")
        submit = [b for b in d.find_elements(By.TAG_NAME, "button") if "toestemming geven" in b.text.lower()]
        check(len(submit) == 1, "the grant form has a submit button saying 'toestemming geven'")
        submit[0].click()
        check(wait_for(lambda: d.find_element(By.ID, "bevestigen").is_displayed()), "the portal asks 'Klopt dit?' before signing")
        summary = d.find_element(By.ID, "bevestiging").text
        check("Zorg B" in summary and "Huisvesting" in summary, "the confirmation says who may see what, in words")
        axe(d, axe_source, "the confirmation of a consent")
        d.find_element(By.ID, "bevestigen").click()
        check(wait_for(lambda: "vastgelegd" in d.find_element(By.ID, "melding").text), "the citizen's consent is recorded")
        check(wait_for(lambda: zorg.call("GET", "/v1/cases/%s/plan" % case)[1].get("items", []) != [], 30),
              "the grantee's node receives the plan item the citizen allowed")
        st, consents = zorg.call("GET", "/v1/cases/%s/consents" % case)
        check(st == 200 and consents["consents"][0]["evidence"]["kind"] == "citizen-signed", "every node holds it as citizen-signed")
        loaded(d)
        axe(d, axe_source, "Wie mag wat zien with a consent")

        # Withdraw it: the button's accessible name says "intrekken" and the organisation.
        buttons = [b for b in d.find_elements(By.TAG_NAME, "button")
                   if "intrekken" in (b.accessible_name or "").lower() and "Zorg B" in (b.accessible_name or "")]
        check(len(buttons) == 1, "one withdraw button named with 'intrekken' and the organisation")
        buttons[0].send_keys(Keys.ENTER)
        check(wait_for(lambda: d.find_element(By.ID, "bevestigen").is_displayed()), "withdrawing asks the same one confirmation")
        d.find_element(By.ID, "bevestigen").send_keys(Keys.ENTER)
        check(wait_for(lambda: "ingetrokken" in d.find_element(By.ID, "melding").text), "the withdrawal is confirmed in Dutch")
        check(wait_for(lambda: zorg.fragments_held() == 0, 30), "the grantee's node purges what it held")

        for path, name in (("/wie-heeft-gekeken", "Wie heeft gekeken"), ("/alles-downloaden", "Alles downloaden")):
            d.get(portal + path)
            loaded(d)
            axe(d, axe_source, name)
            narrow(d, name)
        d.get(portal + "/wie-heeft-gekeken")
        loaded(d)
        text = d.find_element(By.TAG_NAME, "main").text
        check("Anne de Wit" in text and "Zorg B" in text, "Wie heeft gekeken names who looked, across organisations, in plain words")
        d.get(portal + "/alles-downloaden")
        loaded(d)
        link = d.find_element(By.PARTIAL_LINK_TEXT, "Download alles")
        check(link.get_attribute("download") == "mijn-gegevens.json", "Alles downloaden offers one JSON file")

        # A second browser with the used code: a Dutch message, nothing enrolled.
        other = browser()
        drivers.append(other)
        other.get(portal + "/")
        loaded(other)
        f = labelled(other, ["code"])
        f.send_keys(code)
        f.send_keys(Keys.ENTER)
        check(wait_for(lambda: "al gebruikt" in other.find_element(By.ID, "fout").text), "a used code fails with a Dutch message")
        check(other.current_url.rstrip("/") == portal, "and the second browser stays on the start page")
        st, keys = gemeente.call("GET", "/v1/cases/%s/citizen-keys" % case)
        check(len(keys["citizen_keys"]) == 1, "nothing more was enrolled")

        # Issue 16: the regie organisation closes the plan and records the citizen's erasure request.
        st, _ = gemeente.call("POST", "/v1/cases/%s/close" % case, {"reason": "goals-reached"})
        check(st == 200, "the regie organisation closes the case (%s)" % st)
        st, _ = gemeente.call("POST", "/v1/cases/%s/erasure-requests" % case, {"reference": "brief van de burger"})
        check(st == 201, "the regie organisation records the erasure request (%s)" % st)
        d.get(portal + "/mijn-plan")
        loaded(d)
        check(wait_for(lambda: "Uw plan is afgesloten" in d.find_element(By.TAG_NAME, "main").text),
              "Mijn plan says the plan is closed")
        text = d.find_element(By.TAG_NAME, "main").text
        check("de doelen zijn bereikt" in text and "Er kan niets meer bij" in text, "and why, in plain words")
        check("Uw vraag om gegevens te wissen" in text and "gewist" in text, "Mijn plan shows the erasure request and the answer")
        axe(d, axe_source, "Mijn plan, closed, with an erasure request")
        narrow(d, "Mijn plan, closed")
    finally:
        for d in drivers:
            try:
                d.quit()
            except Exception:
                pass
        gemeente.stop()
        zorg.stop()
        if not os.environ.get("KRING_KEEP_TEST_DIRS"):
            shutil.rmtree(root, ignore_errors=True)
    if FAILURES:
        print("%d check(s) failed" % len(FAILURES))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
