"""The objects of the synthetic street (vehicles, people, riders, trees, poles, lights, signs, IDD's add-on
kinds), each painted on a `Canvas` in tree nodes at a depth of the `Street`."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from labeltree.core.taxonomy import ClassDef
from labeltree.datasets.shapes import shape_mask
from labeltree.synth.canvas import Canvas, SignBox, Street, Style, jitter, lowfreq, rect
from labeltree.synth.signs import draw_sign
from labeltree.synth.world import World

# -- objects ------------------------------------------------------------------------------------

def car(cv: Canvas, st: Street, rng: np.random.Generator, N: dict[str, int], X: float, Z: float) -> None:
    big = rng.random() < 0.12
    kind = ("Truck" if rng.random() < 0.5 else "Bus") if big else "Car"
    w, h = (2.5, 3.2) if big else (1.8, 1.5)
    y0, x0, ph, pw = st.box(X, Z, w, h)
    body = jitter(rng, [(160, 20, 20), (30, 30, 35), (200, 200, 205), (40, 60, 120), (120, 120, 125),
                         (20, 80, 50)][rng.integers(6)], 15)
    pic = np.empty((ph, pw, 3), dtype=np.float32)
    pic[:] = body
    mask = rect(ph, pw)
    cab = int(round(ph * (0.2 if big else 0.4)))
    inset = int(round(pw * (0.04 if big else 0.13)))
    if not big and inset > 0:
        mask[:cab, :inset] = False
        mask[:cab, pw - inset:] = False
    pic[int(cab * 0.25):cab, inset:pw - inset] = (45, 55, 70)  # windows
    wh = max(1, int(round(ph * 0.18)))
    ww = max(1, int(round(pw * 0.2)))
    pic[ph - wh:, :ww] = (20, 20, 20)
    pic[ph - wh:, pw - ww:] = (20, 20, 20)
    ly = int(round(ph * 0.55))
    pic[ly:ly + max(1, ph // 10), :max(1, pw // 8)] = (200, 30, 30)
    pic[ly:ly + max(1, ph // 10), pw - max(1, pw // 8):] = (200, 30, 30)
    cv.put(y0, x0, mask, N[kind], cv.new_serial(), pic)


def _wheels(pic: np.ndarray, mask: np.ndarray, wh: int, ww: int) -> None:
    """Dark wheels in the bottom `wh` rows at both sides and the gap between them left unpainted."""
    ph, pw = mask.shape
    pic[ph - wh:, :ww] = (20, 20, 20)
    pic[ph - wh:, pw - ww:] = (20, 20, 20)
    if pw - 2 * ww > 0:
        mask[ph - wh:, ww:pw - ww] = False


def _autorickshaw(cv: Canvas, st: Street, rng: np.random.Generator, node: int, X: float, Z: float) -> None:
    """IDD's three-wheeler seen from behind: black rounded canopy over a yellow or green body."""
    y0, x0, ph, pw = st.box(X, Z, 1.4, 1.75)
    mask = rect(ph, pw)
    cap = max(1, int(round(ph * 0.45)))
    mask[:cap] = shape_mask("circle", 2 * cap, pw)[:cap] | (np.arange(cap)[:, None] >= cap // 2)
    pic = np.empty((ph, pw, 3), dtype=np.float32)
    pic[:cap] = jitter(rng, (28, 28, 30), 6)
    pic[cap:] = jitter(rng, (225, 185, 30) if rng.random() < 0.6 else (40, 140, 70), 15)
    pic[cap:cap + max(1, ph // 8), pw // 5:max(pw // 5 + 1, 4 * pw // 5)] = (60, 55, 50)  # rear opening
    _wheels(pic, mask, max(1, int(round(ph * 0.14))), max(1, int(round(pw * 0.18))))
    cv.put(y0, x0, mask, node, cv.new_serial(), pic)


def _vehicle_fallback(cv: Canvas, st: Street, rng: np.random.Generator, node: int, X: float, Z: float) -> None:
    """A vehicle of no other kind (tractor trailer, cart, caravan): a slatted box on big wheels."""
    y0, x0, ph, pw = st.box(X, Z, 2.2, 2.1)
    mask = rect(ph, pw)
    pic = np.empty((ph, pw, 3), dtype=np.float32)
    pic[:] = jitter(rng, [(200, 110, 40), (60, 90, 150), (120, 85, 55)][rng.integers(3)], 15)
    slat = max(2, ph // 6)
    pic[(np.arange(ph) % slat) == 0] *= 0.55
    _wheels(pic, mask, max(1, int(round(ph * 0.25))), max(1, int(round(pw * 0.22))))
    cv.put(y0, x0, mask, node, cv.new_serial(), pic)


def _barrier(cv: Canvas, st: Street, rng: np.random.Generator, node: int, X: float, Z: float) -> None:
    """A roadside barrier at the kerb: a low, wide board striped red/white or yellow/black, down to the ground."""
    y0, x0, ph, pw = st.box(X, Z, rng.uniform(1.8, 3.6), rng.uniform(0.7, 1.0))
    a, b = ((215, 40, 35), (235, 235, 230)) if rng.random() < 0.6 else ((230, 190, 30), (30, 30, 30))
    stripe = max(2, ph // 2)
    yy, xx = np.mgrid[0:ph, 0:pw]
    pic = np.where((((xx + yy) // stripe) % 2 == 0)[..., None], jitter(rng, a, 8), jitter(rng, b, 8))
    cv.put(y0, x0, rect(ph, pw), node, cv.new_serial(), pic.astype(np.float32))


def idd_objects(N: dict[str, int], st: Street, rng: np.random.Generator,
                 add: Callable[..., None]) -> None:
    """IDD frames only (their own random draws): autorickshaws, other vehicles and roadside barriers,
    each where the tree has its node (IDD's add-on root nodes)."""
    rh = st.road_half
    if "Autorickshaw" in N:
        for _ in range(rng.poisson(1.2)):
            lane = rng.choice([-1.0, 1.0]) * (rh / 2 if rng.random() < 0.6 else rh - 0.8)
            add(rng.uniform(5, 45), _autorickshaw, N["Autorickshaw"], lane + rng.uniform(-0.3, 0.3))
    if "Vehicle Fallback" in N and rng.random() < 0.5:
        add(rng.uniform(8, 50), _vehicle_fallback, N["Vehicle Fallback"], rng.choice([-1.0, 1.0]) * rh / 2)
    if "Obs-Str-Bar Fallback" in N:
        for _ in range(rng.integers(0, 3)):
            s = -1.0 if rng.random() < 0.5 else 1.0
            add(rng.uniform(5, 35), _barrier, N["Obs-Str-Bar Fallback"], s * (rh + rng.uniform(0.1, 0.5)))


def _person_mask(ph: int, pw: int) -> tuple[np.ndarray, int, int]:
    """Silhouette: round head, torso, two legs; returns mask, head rows, torso end row."""
    mask = np.zeros((ph, pw), dtype=bool)
    hd = max(1, int(round(ph * 0.14)))
    hw = max(1, min(pw, int(round(pw * 0.55))))
    hx = (pw - hw) // 2
    mask[:hd, hx:hx + hw] = shape_mask("circle", hd, hw)
    te = max(hd + 1, int(round(ph * 0.55)))
    mask[hd:te] = True
    if pw >= 3:
        lw = max(1, int(round(pw * 0.38)))
        mask[te:, :lw] = True
        mask[te:, pw - lw:] = True
    else:
        mask[te:] = True
    return mask, hd, te


def person(cv: Canvas, st: Street, rng: np.random.Generator, node: int, X: float, Z: float,
            y_base: float = 0.0, height: float | None = None, helmet: bool = False) -> None:
    h = height or rng.uniform(1.55, 1.9)
    y0, x0, ph, pw = st.box(X, Z, 0.55, h, y_base)
    mask, hd, te = _person_mask(ph, pw)
    pic = np.empty((ph, pw, 3), dtype=np.float32)
    pic[:hd] = (40, 40, 45) if helmet else jitter(rng, (200, 160, 130), 20)
    pic[hd:te] = jitter(rng, [(200, 40, 40), (40, 60, 150), (230, 230, 220), (50, 50, 50),
                               (220, 180, 40)][rng.integers(5)], 20)
    pic[te:] = jitter(rng, (45, 45, 70), 15)
    cv.put(y0, x0, mask, node, cv.new_serial(), pic)


def rider(cv: Canvas, st: Street, rng: np.random.Generator, N: dict[str, int], X: float, Z: float) -> None:
    moto = rng.random() < 0.4
    w, h = (0.75, 1.15) if moto else (0.45, 1.05)
    y0, x0, ph, pw = st.box(X, Z, w, h)
    mask = rect(ph, pw)
    pic = np.empty((ph, pw, 3), dtype=np.float32)
    pic[:] = jitter(rng, (60, 60, 70) if moto else (150, 150, 160), 20)
    pic[ph - max(1, ph // 3):] = (25, 25, 25)  # wheel
    cv.put(y0, x0, mask, N["Motorcycle" if moto else "Bicycle"], cv.new_serial(), pic)
    person(cv, st, rng, N["Motorcyclist" if moto else "Bicyclist"], X, Z, y_base=0.55,
            height=rng.uniform(1.1, 1.25), helmet=moto)


def tree(cv: Canvas, st: Street, rng: np.random.Generator, N: dict[str, int], X: float, Z: float) -> None:
    serial = 0
    y0, x0, ph, pw = st.box(X, Z, 0.3, 2.8)
    cv.put(y0, x0, rect(ph, pw), N["Vegetation"], serial, jitter(rng, (90, 65, 45), 10))
    cw, chh = rng.uniform(2.2, 3.5), rng.uniform(2.5, 3.5)
    y0, x0, ph, pw = st.box(X, Z, cw, chh, 2.4)
    m = shape_mask("circle", ph, pw)
    tex = np.asarray(jitter(rng, (60, 105, 40), 12)) * (1 + 0.25 * lowfreq(rng, ph, pw, 2)[..., None])
    cv.put(y0, x0, m, N["Vegetation"], serial, tex)


def _pole(cv: Canvas, st: Street, N: dict[str, int], X: float, Z: float, top: float, serial: int,
          y_base: float = 0.0) -> None:
    y0, x0, ph, pw = st.box(X, Z, 0.14, top - y_base, y_base)
    cv.put(y0, x0, rect(ph, pw), N["Pole"], serial, (130, 130, 135))


def street_light(cv: Canvas, st: Street, rng: np.random.Generator, N: dict[str, int], X: float,
                  Z: float) -> None:
    height = rng.uniform(6.0, 8.0)
    s = cv.new_serial()
    _pole(cv, st, N, X, Z, height, s)
    arm = -np.sign(X) * 1.6
    y0, x0, ph, pw = st.box(X + arm / 2, Z, abs(arm), 0.12, height - 0.12)
    cv.put(y0, x0, rect(ph, pw), N["Pole"], s, (130, 130, 135))
    y0, x0, ph, pw = st.box(X + arm, Z, 0.7, 0.25, height - 0.3)
    cv.put(y0, x0, rect(ph, pw), N["Street Light"], cv.new_serial(), (225, 220, 190))


def traffic_light(cv: Canvas, st: Street, rng: np.random.Generator, N: dict[str, int], X: float,
                   Z: float) -> None:
    _pole(cv, st, N, X, Z, 2.5, cv.new_serial())
    y0, x0, ph, pw = st.box(X, Z, 0.35, 0.95, 2.4)
    pic = np.empty((ph, pw, 3), dtype=np.float32)
    pic[:] = (30, 30, 30)
    lit = rng.integers(3)
    for i, col in enumerate(((220, 40, 30), (230, 180, 30), (40, 200, 80))):
        r0, r1 = (ph * i) // 3, max((ph * i) // 3 + 1, (ph * (i + 1)) // 3)
        pic[r0:r1, pw // 4: max(pw // 4 + 1, 3 * pw // 4)] = col if i == lit else (70, 70, 70)
    cv.put(y0, x0, rect(ph, pw), N["Traffic Light"], cv.new_serial(), pic)


def _place_sign(st: Street, rng: np.random.Generator, style: Style, shape: str,
                taken: list[tuple[int, int]]) -> tuple[float, float, int, int, int, int] | None:
    """A depth, lateral position and pixel box for a sign that lies fully inside the frame and does not
    overlap (in x, pole included) a sign already placed. None if no place was found."""
    W, H = st.W, st.H
    for _ in range(16):
        pw = int(round(rng.uniform(*style.sign_px) * W / 256))
        pw = max(8, min(pw, W - 4, H - 4))
        ph = int(round(pw * 0.88)) if shape in ("triangle", "inverted-triangle") else pw
        size_m = rng.uniform(0.7, 0.9)
        Z = st.f * size_m / pw
        if Z < 2.5:
            continue
        side = -1 if rng.random() < 0.5 else 1
        X = side * (st.road_half + rng.uniform(0.3, 0.9))
        xc = st.project(X, Z)[0]
        if not pw / 2 + 1 <= xc <= W - pw / 2 - 1:  # pole on a traffic island / gantry instead
            xc = rng.uniform(pw / 2 + 1, W - pw / 2 - 1)
            X = (xc - st.vpx) * Z / st.f + st.cam_x
        x0 = int(round(xc - pw / 2))
        half_h = size_m * ph / pw / 2
        yc_m = rng.uniform(1.9, 2.7)
        y_top = st.project(X, Z, yc_m + half_h)[1]
        if y_top < 1:
            yc_m = st.ch + (st.hor - 1.5) * Z / st.f - half_h
            if yc_m < 0.9:
                continue
            y_top = st.project(X, Z, yc_m + half_h)[1]
        y0 = int(round(y_top))
        if y0 < 0 or y0 + ph > H - 1 or x0 < 0 or x0 + pw > W:
            continue
        if any(not (x0 + pw + 2 <= a or b + 2 <= x0) for a, b in taken):
            continue
        taken.append((x0, x0 + pw))
        return X, Z, x0, y0, pw, ph
    return None


def sign_post(cv: Canvas, st: Street, rng: np.random.Generator, world: World, style: Style,
               cls: ClassDef, front: bool, taken: list[tuple[int, int]]) -> tuple[float, Callable[[], SignBox]] | None:
    """Place a sign post; returns (depth, painter) so posts can be painted far to near, or None."""
    place = _place_sign(st, rng, style, cls.shape or "circle", taken)
    if place is None:
        return None
    X, Z, x0, y0, pw, ph = place
    serial = cv.new_serial()

    def paint() -> SignBox:
        # pole from the ground up to the sign's centre, then the sign face over it
        y_mid_m = st.ch - (y0 + ph / 2 - st.hor) * Z / st.f
        _pole(cv, st, world.node, X, Z, max(0.2, y_mid_m), cv.new_serial())
        pic, mask = draw_sign(cls, ph, pw)
        if front:
            cv.put(y0, x0, mask, world.sign_node[cls.id], serial, pic)
        else:
            back = np.empty((ph, pw, 3), dtype=np.float32)
            back[:] = jitter(rng, (150, 150, 155), 10)
            cv.put(y0, x0, mask, world.node["Traffic Sign (Back)"], serial, back)
        return SignBox(cls.id if front else -1, x0, y0, x0 + pw - 1, y0 + ph - 1, serial, front)

    return Z, paint


