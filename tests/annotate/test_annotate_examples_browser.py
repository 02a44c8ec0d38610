"""serve --gtsdb in a real browser (headless Chromium via Playwright) on `labeltree synth` data.

The class buttons must show pictures cropped from the synthetic GTSDB frames (the drawn glyph where
gt.txt has no box of a class), the proposal and the examples must stand side by side with the sign
the same size on screen, the page must fit 1280x720 and 1920x1080 without scrolling, and every
proposal is labelled with the keyboard (its true class is read from the synthetic Cityscapes Extended
labels). Screenshots at both sizes go to the test's tmp folder and to $LABELTREE_SCREENSHOT_DIR when set.
"""

from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_annotate import server_process
from test_annotate_browser import launch

from labeltree.annotate import db
from labeltree.annotate.propose import propose
from labeltree.datasets.gtsdb import load_gt
from labeltree.synth.runner import synthesize

SIZES = [(1280, 720), (1920, 1080)]
PER_CLASS = 4

FITS = """() => {
  const inView = (el) => { const r = el.getBoundingClientRect();
    return r.width > 0 && r.left >= 0 && r.top >= 0 && r.right <= innerWidth + 0.5 && r.bottom <= innerHeight + 0.5; };
  const de = document.documentElement, ch = document.getElementById('choices');
  return {page: [de.scrollWidth, de.scrollHeight], window: [innerWidth, innerHeight],
          choices_overflow: ch.scrollHeight - ch.clientHeight,
          buttons: [...document.querySelectorAll('.choice')].filter(inView).length,
          parts: ['frame', 'crop', 'filter', 'back', 'skip', 'undo', 'message'].filter(
            (id) => !inView(document.getElementById(id))),
          examples: [...document.querySelectorAll('#examples figure:not([hidden]), #examples .noex')].map(inView)};
}"""

# the sign's longer side on screen: in the proposal crop and in each shown example
SCALES = """() => {
  const long = (b) => Math.max(b[2] - b[0], b[3] - b[1]);
  const crop = document.getElementById('crop'), p = current;  // the page's own proposal
  const shown = [...document.querySelectorAll('#examples figure.example:not([hidden])')];
  return {proposal: long(p.crop_box) * crop.getBoundingClientRect().width / p.crop_size[0],
          examples: shown.map((f) => long(f.ex.box) * f.querySelector('img').getBoundingClientRect().width
                                     / f.ex.size[0]),
          loaded: shown.every((f) => f.querySelector('img').complete && f.querySelector('img').naturalWidth > 0),
          total: document.querySelectorAll('#examples figure.example').length};
}"""

BUTTONS = """() => [...document.querySelectorAll('.choice')].map((b) => {
  const img = b.querySelector('.thumb img');
  return {key: b.dataset.key, svg: !!b.querySelector('svg'), src: img ? img.getAttribute('src') : null,
          natural: img && img.complete ? [img.naturalWidth, img.naturalHeight] : null,
          thumb: img ? b.querySelector('.thumb').getBoundingClientRect().width : 0};
})"""


def crop_size(box: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int]:
    """Size of an example picture: the box with half its size (at least 8 px) on each side, inside the frame."""
    x0, y0, x1, y1 = box
    mx, my = max(8, (x1 - x0 + 1) // 2), max(8, (y1 - y0 + 1) // 2)
    return min(width, x1 + 1 + mx) - max(0, x0 - mx), min(height, y1 + 1 + my) - max(0, y0 - my)


def test_gtsdb_examples_on_the_buttons_and_keyboard_labelling(tmp_path: Path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    syn = synthesize(tmp_path / "syn", images=6, gtsdb_images=48, size=(512, 256), workers=1, progress=False)
    gtsdb, work = syn.roots["gtsdb"], tmp_path / "work"
    n = propose(syn.roots["cityscapes"], work, min_size=20, workers=1, progress=False).proposals_new
    assert n >= 6
    # the true class of each proposal, from the Cityscapes Extended labels synth wrote with the same frames
    con = db.connect(work)
    rows = con.execute("SELECT i.split, i.city, i.key, i.components, p.component FROM proposals p "
                       "JOIN images i ON i.id = p.image_id").fetchall()
    con.close()
    truth: dict[tuple[str, int], int] = {}
    for split, city, key, comps_rel, comp in rows:
        ext_file = syn.roots["cityscapes-extended"] / "gtFine" / split / city / f"{key}_gtFine_labelIds.png"
        with Image.open(ext_file) as im:
            ext = np.asarray(im)
        with Image.open(work / comps_rel) as im:
            values = np.unique(ext[np.asarray(im) == comp])
        assert len(values) == 1 and values[0] >= 2000
        truth[(key, comp)] = int(values[0]) - 2000
    # some of the proposals' classes lose their boxes in gt.txt: their buttons keep the drawn glyph
    glyph_only = set(sorted(set(truth.values()))[::3])
    lines = (gtsdb / "gt.txt").read_text().splitlines()
    (gtsdb / "gt.txt").write_text("".join(f"{line}\n" for line in lines if int(line.split(";")[5]) not in glyph_only))
    # what the buttons must show: each class's largest box in gt.txt, cropped from its frame
    gt = load_gt(gtsdb / "gt.txt")
    assert gt.clipped == [] and gt.dropped == []
    boxes: dict[int, list[tuple[int, str, int, tuple[int, int, int, int]]]] = {}
    for name, frame_boxes in gt.boxes.items():
        for b in frame_boxes:
            boxes.setdefault(b.class_id, []).append((b.area, name, b.line, (b.x0, b.y0, b.x1, b.y1)))
    largest = {k: min(v, key=lambda t: (-t[0], t[1], t[2])) for k, v in boxes.items()}
    assert 30 < len(boxes) < 43 and not glyph_only & set(boxes)  # most classes have pictures, some keep their glyph
    assert any(k not in boxes for k in truth.values()) and any(len(boxes.get(k, ())) >= 2 for k in truth.values())

    shots = {size: tmp_path / f"annotate-examples-{size[0]}x{size[1]}.png" for size in SIZES}
    with server_process(work, "--gtsdb", str(gtsdb), "--examples", str(PER_CLASS)) as (_proc, url), \
            sync_api.sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": SIZES[0][0], "height": SIZES[0][1]})
        page.goto(url + "/?annotator=tester")
        page.wait_for_selector("body[data-ready='1']", timeout=20000)
        page.wait_for_function("[...document.querySelectorAll('.thumb img')].every((i) => i.complete)", timeout=10000)

        # buttons: a picture from the frames where gt.txt has the class, the glyph elsewhere
        buttons = page.evaluate(BUTTONS)
        assert len(buttons) == 45
        for b in buttons[:43]:
            k = int(b["key"])
            if k in boxes:
                _, name, _, box = largest[k]
                assert b["src"].startswith(f"/api/examples/{k}/0.png") and not b["svg"], b
                assert tuple(b["natural"]) == crop_size(box, 512, 256), (k, b, box)
                assert b["thumb"] >= 20
            else:
                assert b["svg"] and b["src"] is None, b
        assert all(b["svg"] for b in buttons[43:])
        # the button picture is exactly the frame's pixels around the class's largest box
        highlighted = page.locator(".choice.hl").get_attribute("data-key")  # what Enter would choose
        assert page.locator("#examples").get_attribute("data-class") == highlighted
        k_many = max((k for k in boxes if str(k) != highlighted), key=lambda k: (len(boxes[k]), -k))
        _, name, _, (x0, y0, x1, y1) = largest[k_many]
        body = page.request.get(url + buttons[k_many]["src"]).body()
        with Image.open(gtsdb / name) as im:
            frame = np.asarray(im.convert("RGB"))
        mx, my = max(8, (x1 - x0 + 1) // 2), max(8, (y1 - y0 + 1) // 2)
        want = frame[max(0, y0 - my):y1 + 1 + my, max(0, x0 - mx):x1 + 1 + mx]
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(body)).convert("RGB")), want)

        # hover: that class's examples (up to PER_CLASS) beside the proposal; leaving restores the highlight
        page.hover(f".choice[data-key='{k_many}']")
        page.wait_for_selector(f"#examples[data-class='{k_many}']", timeout=5000)
        assert page.evaluate(SCALES)["total"] == min(PER_CLASS, len(boxes[k_many])) >= 2
        page.mouse.move(2, 2)
        page.wait_for_selector(f"#examples[data-class='{highlighted}']", timeout=5000)

        def check_fits(size: tuple[int, int]) -> None:
            f = page.evaluate(FITS)
            assert f["page"] == f["window"] == list(size), f  # no scroll bars: the page is exactly the window
            assert f["choices_overflow"] <= 0 and f["buttons"] == 45 and f["parts"] == [], f
            assert f["examples"] and all(f["examples"]), f

        labelled: dict[tuple[str, int], int] = {}
        shot_taken = set()
        for step in range(n):
            if step == n // 2:  # the second half at the larger size
                page.set_viewport_size({"width": SIZES[1][0], "height": SIZES[1][1]})
            size = SIZES[0] if step < n // 2 else SIZES[1]
            where = page.locator("#key").inner_text()
            m = re.search(r" · (\w+) · component (\d+) · ", where)
            key, comp = m.group(1), int(m.group(2))
            k = truth[(key, comp)]
            page.keyboard.type(str(k))  # ClassID: its examples stand beside the proposal
            page.wait_for_selector(f"#examples[data-class='{k}']", timeout=5000)
            assert page.locator(".choice.hl").get_attribute("data-key") == str(k)
            if k in boxes:
                page.wait_for_function("[...document.querySelectorAll('#examples img')].every((i) => i.complete)",
                                       timeout=5000)
                s = page.evaluate(SCALES)
                assert s["total"] == min(PER_CLASS, len(boxes[k])) and s["loaded"] and s["examples"], s
                assert all(abs(e - s["proposal"]) < 0.5 for e in s["examples"]), s  # the same scale
            else:
                assert page.locator("#examples .noex svg").count() == 1  # the glyph stands in
            check_fits(size)
            if size not in shot_taken and len(boxes.get(k, ())) >= 2:  # the proposal beside pictures of its class
                page.screenshot(path=str(shots[size]))
                shot_taken.add(size)
            page.keyboard.press("Enter")
            labelled[(key, comp)] = k
            page.wait_for_function(f"document.getElementById('key').textContent !== {where!r} || "
                                   "document.getElementById('message').textContent.includes('All proposals')",
                                   timeout=10000)
        page.wait_for_selector("#message.ok:has-text('All proposals are labelled')", timeout=10000)
        for size in SIZES:  # a size where no proposal's class had several pictures: the finished page
            if size not in shot_taken:
                page.set_viewport_size({"width": size[0], "height": size[1]})
                page.screenshot(path=str(shots[size]))
        browser.close()
    assert labelled == truth
    for shot in shots.values():
        with Image.open(shot) as im:
            assert im.size in SIZES and shot.stat().st_size > 20000
    if os.environ.get("LABELTREE_SCREENSHOT_DIR"):
        out = Path(os.environ["LABELTREE_SCREENSHOT_DIR"])
        out.mkdir(parents=True, exist_ok=True)
        for shot in shots.values():
            shutil.copy(shot, out / shot.name)

    con = db.connect(work)
    decided = {(key, comp): int(cls) for key, comp, cls in con.execute(
        "SELECT i.key, p.component, d.class FROM decisions d JOIN proposals p ON p.id = d.proposal_id "
        "JOIN images i ON i.id = p.image_id WHERE d.annotator = 'tester'")}
    con.close()
    assert decided == truth
