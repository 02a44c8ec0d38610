"""The labelling page in a real browser: headless Chromium (Debian's package) driven by Playwright.

Three proposals are labelled with the keyboard only (Space accepts a model guess, ClassID + Enter,
name filter + Enter, undo, arrow keys), then the export is checked pixel by pixel. A screenshot is saved in the test's
tmp folder (and copied to $LABELTREE_SCREENSHOT_DIR when set) so that a person can look at the page.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from test_annotate import GTSDB, ROAD, SIGN, SKY, server_process

from labeltree.annotate import db
from labeltree.annotate.export import export_extended
from labeltree.annotate.propose import propose
from labeltree.annotate.suggest import suggest_with
from labeltree.core.taxonomy import load_taxonomy

CHROMIUM = os.environ.get("LABELTREE_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def street(root: Path) -> str:
    """A 640x320 street frame with three signs: a round, a triangular and an octagonal one."""
    cs = load_taxonomy("cityscapes")
    w, h = 640, 320
    lab = Image.new("L", (w, h), SKY)
    rgb = Image.new("RGB", (w, h), (120, 170, 220))
    dl, dr = ImageDraw.Draw(lab), ImageDraw.Draw(rgb)
    building, pole = cs.find("building").id, cs.find("pole").id
    for x0, x1, top, col in [(0, 150, 40, (150, 120, 100)), (150, 330, 90, (170, 160, 150)),
                             (420, 640, 60, (140, 110, 90))]:
        dl.rectangle((x0, top, x1, 200), fill=building)
        dr.rectangle((x0, top, x1, 200), fill=col)
        for wx in range(x0 + 12, x1 - 20, 34):
            for wy in range(top + 14, 185, 36):
                dr.rectangle((wx, wy, wx + 16, wy + 20), fill=(60, 70, 90))
    dl.rectangle((0, 200, w, h), fill=ROAD)
    dr.rectangle((0, 200, w, h), fill=(90, 90, 95))
    dr.rectangle((0, 256, w, 262), fill=(230, 230, 230))
    signs = [("ellipse", (92, 70, 132, 110)), ("triangle", (300, 104, 344, 142)), ("octagon", (500, 96, 540, 136))]
    for kind, (x0, y0, x1, y1) in signs:
        cx = (x0 + x1) // 2
        dl.rectangle((cx - 2, y1, cx + 2, 230), fill=pole)
        dr.rectangle((cx - 2, y1, cx + 2, 230), fill=(110, 110, 110))
        if kind == "ellipse":
            dl.ellipse((x0, y0, x1, y1), fill=SIGN)
            dr.ellipse((x0, y0, x1, y1), fill=(255, 255, 255), outline=(200, 20, 20), width=6)
        elif kind == "triangle":
            pts = [(cx, y0), (x1, y1), (x0, y1)]
            dl.polygon(pts, fill=SIGN)
            dr.polygon(pts, fill=(255, 255, 255), outline=(200, 20, 20), width=5)
        else:
            pts = [(x0 + 12, y0), (x1 - 12, y0), (x1, y0 + 12), (x1, y1 - 12), (x1 - 12, y1), (x0 + 12, y1),
                   (x0, y1 - 12), (x0, y0 + 12)]
            dl.polygon(pts, fill=SIGN)
            dr.polygon(pts, fill=(200, 20, 20))
            dr.text((x0 + 6, y0 + 14), "STOP", fill=(255, 255, 255))
    key = "ulm_000007_000019"
    gt = root / "gtFine" / "val" / "ulm" / f"{key}_gtFine_labelIds.png"
    im = root / "leftImg8bit" / "val" / "ulm" / f"{key}_leftImg8bit.png"
    gt.parent.mkdir(parents=True)
    im.parent.mkdir(parents=True)
    lab.save(gt)
    rgb.save(im)
    return key


def launch(p):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    try:
        return p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    except Exception as e:  # a browser that cannot start here is an environment problem, not ours
        pytest.skip(f"Chromium at {CHROMIUM} does not start headless: {str(e).splitlines()[0]}")


def test_label_three_signs_with_the_keyboard(tmp_path: Path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    root, work = tmp_path / "cityscapes", tmp_path / "work"
    street(root)
    assert propose(root, work, min_size=20, workers=1, progress=False).proposals_new == 3
    # a stand-in model's guesses by position (left third: speed limit 50, middle: danger, right: stop)
    guess = np.full((len(GTSDB.classes), 4, 6), 0.01)
    for cols, name, p in ((slice(0, 2), "speed limit 50", 0.9), (slice(2, 4), "danger", 0.55),
                          (slice(4, 6), "stop", 0.8)):
        guess[GTSDB.find(name).id, :, cols] = p
    assert suggest_with(work, lambda _rgb: guess, GTSDB.ids, progress=False).proposals == 3
    shot = tmp_path / "annotate-page.png"
    with server_process(work) as (_proc, url), sync_api.sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 860})
        page.goto(url + "/?annotator=tester")
        page.wait_for_selector("body[data-ready='1']", timeout=20000)
        key = page.locator("#key")
        assert "component 1" in key.inner_text()
        assert page.locator("#progress").inner_text().split()[:4] == ["val", "0", "/", "3"]
        # the 43 GTSDB classes with a drawn glyph each, then "other sign" and "not a sign"
        choices = page.locator("#choices .choice")
        assert choices.count() == len(GTSDB.classes) + 2 == 45
        assert page.locator("#choices .choice:not(.extra) svg").count() == 43
        assert [choices.nth(i).locator(".name").inner_text() for i in (0, 42, 43, 44)] == [
            f"0 {GTSDB.by_id(0).name}", f"42 {GTSDB.by_id(42).name}", "other sign", "not a sign"]
        # every button fits in the panel at this window size (no scrolling to reach "not a sign")
        panel = page.locator("#choices").bounding_box()
        last = choices.nth(44).bounding_box()
        assert last["y"] + last["height"] <= panel["y"] + panel["height"] + 1
        assert page.locator("#frame").evaluate("e => e.complete && e.naturalWidth") == 640
        assert page.locator("#crop").evaluate("e => e.complete && e.naturalWidth") > 0

        def wait_for(component: int) -> None:
            page.wait_for_function(f"document.getElementById('key').textContent.includes('component {component}')",
                                   timeout=10000)

        # 1 (the round sign): the model's guess, accepted with Space
        assert "speed limit 50" in page.locator("#suggestion").inner_text()
        page.keyboard.press(" ")
        wait_for(2)
        # 2 (the octagon): filter by name + Enter
        page.keyboard.type("sto")
        assert page.locator(".choice.hl .name").inner_text().endswith("stop")
        page.keyboard.press("Enter")
        wait_for(3)
        # 3 (the triangle): a wrong choice, undone with Ctrl+Z, then the filter with arrow keys
        page.keyboard.type(str(GTSDB.find("give way").id))  # ClassID + Enter
        page.keyboard.press("Enter")
        page.wait_for_selector("#message.ok:has-text('All proposals are labelled')", timeout=10000)
        page.keyboard.press("Control+z")
        wait_for(3)
        page.keyboard.type("give")
        page.keyboard.press("Escape")
        page.keyboard.type("dang")
        page.wait_for_function("document.querySelector('.choice.hl')", timeout=5000)
        page.screenshot(path=str(shot), full_page=True)
        page.keyboard.press("ArrowRight")  # away and back: the highlight wraps within the matches
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("Enter")
        page.wait_for_selector("#message.ok:has-text('All proposals are labelled')", timeout=10000)
        assert page.locator("#progress").inner_text().split()[:4] == ["val", "3", "/", "3"]
        browser.close()
    assert shot.stat().st_size > 10000
    if os.environ.get("LABELTREE_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(os.environ["LABELTREE_SCREENSHOT_DIR"]) / "annotate-screenshot.png")

    con = db.connect(work)
    decided = [tuple(r) for r in con.execute("SELECT p.component, d.class, d.annotator FROM proposals p "
                                             "JOIN decisions d ON d.proposal_id=p.id ORDER BY p.component")]
    con.close()
    want = [str(GTSDB.find(n).id) for n in ("speed limit 50", "stop", "danger")]
    assert decided == [(1, want[0], "tester"), (2, want[1], "tester"), (3, want[2], "tester")]
    out = tmp_path / "extended"
    export_extended(work, out, workers=1, progress=False)
    with Image.open(root / "gtFine/val/ulm/ulm_000007_000019_gtFine_labelIds.png") as im:
        src = np.asarray(im)
    with Image.open(out / "gtFine/val/ulm/ulm_000007_000019_gtFine_labelIds.png") as im:
        got = np.asarray(im)
    comps = np.asarray(Image.open(work / "components/val/ulm_000007_000019_components.png"))
    expected = src.astype(np.uint16)
    for k, cls in enumerate(want, start=1):
        expected[comps == k] = GTSDB.stored_value(int(cls))
    assert np.array_equal(got, expected)
    values = set(np.unique(src).tolist()) - {SIGN} | {GTSDB.stored_value(int(c)) for c in want}
    assert set(np.unique(got).tolist()) == values  # every sign pixel was in one of the three proposals
