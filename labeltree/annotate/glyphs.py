"""Small SVG pictures of a sign class, drawn from its taxonomy shape and colour.

The buttons show what a sign looks like (round red ring, orange triangle, ...) so that an
annotator finds the class by its look, not by reading 43 names.
"""

from __future__ import annotations

import math
from html import escape

SIZE = 40


def _polygon(n: int, r: float, rotation_deg: float, cx: float = SIZE / 2, cy: float = SIZE / 2) -> str:
    pts = []
    for i in range(n):
        a = math.radians(rotation_deg + 360.0 * i / n)
        pts.append(f"{cx + r * math.cos(a):.1f},{cy + r * math.sin(a):.1f}")
    return " ".join(pts)


def shape_element(shape: str | None, stroke: str, fill: str, width: float) -> str:
    c, r = SIZE / 2, SIZE / 2 - width / 2 - 1
    attrs = f'fill="{fill}" stroke="{stroke}" stroke-width="{width}" stroke-linejoin="round"'
    if shape == "circle" or shape is None:
        return f'<circle cx="{c}" cy="{c}" r="{r:.1f}" {attrs}/>'
    if shape == "triangle":
        return f'<polygon points="{_polygon(3, r, -90, c, c + r * 0.2)}" {attrs}/>'
    if shape == "inverted-triangle":
        return f'<polygon points="{_polygon(3, r, 90, c, c - r * 0.2)}" {attrs}/>'
    if shape == "octagon":
        return f'<polygon points="{_polygon(8, r, 22.5)}" {attrs}/>'
    if shape == "diamond":
        return f'<polygon points="{_polygon(4, r, -90)}" {attrs}/>'
    raise ValueError(f"unknown sign shape {shape!r}")


def glyph_svg(shape: str | None, color: tuple[int, int, int], text: str = "") -> str:
    """An SVG of the sign: shape outlined in the class colour, lightly filled, with a short label."""
    r, g, b = color
    stroke = f"rgb({r},{g},{b})"
    fill = f"rgba({r},{g},{b},0.18)"
    body = shape_element(shape, stroke, fill, 5)
    label = ""
    if text:
        fs = 13 if len(text) <= 2 else 10
        y = SIZE / 2 + fs / 3 + (3 if shape == "triangle" else -3 if shape == "inverted-triangle" else 0)
        label = (f'<text x="{SIZE / 2}" y="{y:.1f}" font-size="{fs}" font-family="sans-serif" font-weight="bold" '
                 f'text-anchor="middle" fill="#222">{escape(text)}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{SIZE}" height="{SIZE}" viewBox="0 0 {SIZE} {SIZE}" '
            f'role="img">{body}{label}</svg>')


def special_svg(kind: str) -> str:
    """Glyphs of the two extra choices: a dashed outline (other sign) and a crossed box (not a sign)."""
    if kind == "other":
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{SIZE}" height="{SIZE}" viewBox="0 0 {SIZE} {SIZE}">'
                f'<rect x="4" y="4" width="32" height="32" rx="6" fill="none" stroke="#555" stroke-width="3" '
                f'stroke-dasharray="5 3"/><text x="20" y="26" font-size="16" text-anchor="middle" '
                f'font-family="sans-serif" fill="#555">?</text></svg>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{SIZE}" height="{SIZE}" viewBox="0 0 {SIZE} {SIZE}">'
            f'<rect x="4" y="4" width="32" height="32" rx="4" fill="none" stroke="#333" stroke-width="3"/>'
            f'<path d="M10 10 L30 30 M30 10 L10 30" stroke="#c00" stroke-width="4"/></svg>')
