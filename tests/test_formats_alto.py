"""ALTO output: valid against the official ALTO 4.4 schema, boxes as in the JSON, text as in the page text."""

from __future__ import annotations

from pathlib import Path

import pytest
from formats_data import doc_result, make_scan_pdf, normalise, paths_for
from lxml import etree

from deepocr_cli.outputs.alto import ESTIMATE_NOTE, render_alto
from deepocr_cli.outputs.json import render_json
from deepocr_cli.outputs.lines import block_text, page_text

SCHEMA_DIR = Path(__file__).parent / "data" / "alto"
NS = {"a": "http://www.loc.gov/standards/alto/ns-v4#"}
RAWS = ["paper_two_column.txt", "cjk.txt", "table_page.txt", "multibox.txt"]


@pytest.fixture(scope="module")
def schema():
    # alto-4-4.xsd imports xlink.xsd from loc.gov; the tests have no network, so point it at the local stand-in.
    text = (SCHEMA_DIR / "alto-4-4.xsd").read_text(encoding="utf-8")
    text = text.replace("http://www.loc.gov/standards/xlink/xlink.xsd", "xlink.xsd")
    return etree.XMLSchema(etree.fromstring(text.encode("utf-8"), base_url=SCHEMA_DIR.resolve().as_uri() + "/"))


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory):
    source = make_scan_pdf(tmp_path_factory.mktemp("alto") / "scan.pdf", rotations=(0, 0, 0, 0, 0))
    result = doc_result(source, [*RAWS, None], failed=(4,))
    return result, etree.fromstring(render_alto(result, paths_for(source)))


def test_validates_against_the_alto_4_4_schema(schema, converted) -> None:
    _, root = converted
    assert schema.validate(root), schema.error_log
    broken = etree.fromstring(etree.tostring(root))
    broken.find(".//a:TextBlock", NS).attrib.pop("ID")
    assert not schema.validate(broken)  # the schema does check what we write


def _box(el) -> tuple[float, float, float, float]:
    x, y = float(el.get("HPOS")), float(el.get("VPOS"))
    return (x, y, x + float(el.get("WIDTH")), y + float(el.get("HEIGHT")))


def test_block_boxes_and_order_match_the_json(converted) -> None:
    result, root = converted
    data = render_json(result)
    for page_json in data["pages"]:
        n = page_json["page"]
        page_el = root.find(f".//a:Page[@ID='p{n}']", NS)
        assert int(page_el.get("WIDTH")) == page_json["width"] and int(page_el.get("HEIGHT")) == page_json["height"]
        if page_json["error"]:
            assert "failed at infer" in page_el.get("QUALITY_DETAIL") and page_el.find("a:PrintSpace", NS) is None
            continue
        space = page_el.find("a:PrintSpace", NS)
        top = [el for el in space if el.get("ID", "").startswith(f"p{n}_b")]
        assert [el.get("ID") for el in top] == [f"p{n}_b{b['index']}" for b in page_json["blocks"]]
        refs = root.findall(f".//a:OrderedGroup[@ID='p{n}_order']/a:ElementRef", NS)
        assert [r.get("REF") for r in refs] == [el.get("ID") for el in top]
        for el, block in zip(top, page_json["blocks"], strict=True):
            boxes = block["boxes_px"]
            union = (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))
            assert _box(el) == pytest.approx(union, abs=0.05)
            assert root.find(f".//a:LayoutTag[@ID='{el.get('TAGREFS')}']", NS).get("LABEL") == block["label"]
            kind = etree.QName(el).localname
            if block["label"] == "image":
                assert kind in ("Illustration", "ComposedBlock")
            elif block["table"] is not None:
                assert kind == "ComposedBlock" and el.get("TYPE") == "table"
            else:
                assert kind == "TextBlock"


def test_strings_spell_the_block_text_inside_their_boxes(converted) -> None:
    result, root = converted
    for page in result.pages:
        if page.error is not None:
            continue
        for block in page.blocks:
            el = root.find(f".//*[@ID='p{page.index + 1}_b{block.index}']", NS)
            words = el.findall(".//a:String", NS)
            assert normalise(" ".join(w.get("CONTENT") for w in words)) == normalise(block_text(block))
            x0, y0, x1, y1 = _box(el)
            for w in words:
                wx0, wy0, wx1, wy1 = _box(w)
                assert x0 - 0.1 <= wx0 <= wx1 <= x1 + 0.1 and y0 - 0.1 <= wy0 <= wy1 <= y1 + 0.1
        strings = root.findall(f".//a:Page[@ID='p{page.index + 1}']//a:String", NS)
        assert normalise(" ".join(s.get("CONTENT") for s in strings)) == normalise(page_text(page))


def test_processing_names_deepocr_the_model_and_the_estimates(converted) -> None:
    _, root = converted
    assert root.find(".//a:MeasurementUnit", NS).text == "pixel"
    proc = root.find(".//a:Processing", NS)
    texts = [e.text for e in proc.iter()]
    assert "deepocr" in texts and ESTIMATE_NOTE in texts
    app = proc.find(".//a:applicationDescription", NS).text
    assert "deepseek-ai/DeepSeek-OCR" in app and "abc123" in app
    assert "144.0 dpi" in proc.find("a:processingStepDescription", NS).text
