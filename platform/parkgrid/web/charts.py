"""Small server-side SVG charts (no script, no network): supply/demand curves, load rates."""

from __future__ import annotations

from decimal import Decimal

from markupsafe import Markup, escape

W, H, PAD = 380, 190, 34


def _polyline(points, colour: str, width: float = 2) -> str:
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return (f'<polyline fill="none" stroke="{colour}" stroke-width="{width}" '
            f'points="{coords}"/>')


def curve_svg(curve: dict, label_supply: str, label_demand: str) -> Markup:
    """Step curves of one period: supply rising, demand falling, the clearing point marked."""
    steps = curve["supply"] + curve["demand"]
    max_q = max([s[1] for s in steps] + [Decimal(1)])
    max_p = max([s[2] for s in steps] + [Decimal("0.0001")]) * Decimal("1.1")

    def xy(q, p):
        return (PAD + float(q / max_q) * (W - 2 * PAD),
                H - PAD + 0 - float(p / max_p) * (H - 2 * PAD))

    def path(segments):
        points = []
        for start, end, price in segments:
            points += [xy(start, price), xy(end, price)]
        return points

    parts = [f'<svg viewBox="0 0 {W} {H}" class="chart" role="img">',
             f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#999"/>',
             f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" stroke="#999"/>']
    if curve["supply"]:
        parts.append(_polyline(path(curve["supply"]), "#0b6bcb"))
    if curve["demand"]:
        parts.append(_polyline(path(curve["demand"]), "#d9822b"))
    if curve["price_low"] is not None and curve["volume"] > 0:
        x, y = xy(curve["volume"], curve["price_low"])
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="#18794e"/>')
    parts.append(f'<text x="{W - PAD}" y="{H - 8}" text-anchor="end" font-size="11">'
                 f'{escape(format(max_q, "f"))} kVA</text>')
    parts.append(f'<text x="4" y="{PAD - 8}" font-size="11">{escape(format(max_p, ".4f"))}</text>')
    parts.append(f'<text x="{PAD + 4}" y="{PAD + 4}" font-size="11" fill="#0b6bcb">'
                 f'{escape(label_supply)}</text>')
    parts.append(f'<text x="{PAD + 4}" y="{PAD + 18}" font-size="11" fill="#d9822b">'
                 f'{escape(label_demand)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def load_svg(row: dict) -> Markup:
    """A transformer's load rate per period before (grey) and after (blue) the clearing."""
    n = len(row["before"])
    top = max([float(v) for v in row["before"] + row["after"]] + [float(row["max_rate"]), 0.1])
    top *= 1.1
    bar = (W - 2 * PAD) / max(n, 1)
    parts = [f'<svg viewBox="0 0 {W} {H}" class="chart" role="img">']
    for t in range(n):
        for k, (value, colour) in enumerate(((row["before"][t], "#b8c2cc"),
                                             (row["after"][t], "#0b6bcb"))):
            height = float(value) / top * (H - 2 * PAD)
            x = PAD + t * bar + k * bar / 2
            parts.append(f'<rect x="{x:.1f}" y="{H - PAD - height:.1f}" width="{bar / 2 - 1:.1f}" '
                         f'height="{height:.1f}" fill="{colour}"/>')
    y = H - PAD - float(row["max_rate"]) / top * (H - 2 * PAD)
    parts.append(f'<line x1="{PAD}" y1="{y:.1f}" x2="{W - PAD}" y2="{y:.1f}" stroke="#c0392b" '
                 f'stroke-dasharray="4 3"/>')
    parts.append(f'<text x="{W - PAD}" y="{y - 4:.1f}" text-anchor="end" font-size="11" '
                 f'fill="#c0392b">{float(row["max_rate"]):.0%}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
