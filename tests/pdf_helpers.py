"""Hand-written PDFs for the reader tests: every object exactly as the test writes it."""

from __future__ import annotations


def hand_pdf(objs: list[bytes]) -> bytes:
    """A PDF written object by object, with a correct xref table (so only what the objects say is wrong)."""
    out = b"%PDF-1.4\n"
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<</Size {len(objs) + 1}/Root 1 0 R>>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out
