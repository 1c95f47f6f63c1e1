"""The flow diagrams drawn in pure Python: every step and edge drawn, a readable layered layout,
and nothing in the SVG a strict Content-Security-Policy would refuse."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from callflow.language import svg
from callflow.language.graph import FORMATS, draw
from callflow.language.loader import load_flowset
from tests.conftest import FLOWS

NS = {"svg": "http://www.w3.org/2000/svg"}


@pytest.fixture(scope="module")
def flowset():
    return load_flowset(FLOWS)


@pytest.fixture(params=["respect-phoneline", "mens-advice-line"])
def flow(request, flowset):
    return flowset.flows[request.param]


def texts(document: str) -> list[str]:
    return [t.text or "" for t in ET.fromstring(document).iter(f"{{{NS['svg']}}}text")]


def test_svg_is_a_format_of_the_graph_command():
    assert "svg" in FORMATS


def test_the_drawing_is_well_formed_and_names_every_step(flow):
    document = svg.render(flow)
    root = ET.fromstring(document)
    assert root.tag == f"{{{NS['svg']}}}svg"
    assert root.get("role") == "img"
    written = texts(document)
    for name in flow.steps:
        assert name in written
    assert flow.helpline in written
    assert "Confidentiality notice" in written


def test_every_edge_is_drawn_once(flow):
    nodes, edges, _, _ = svg.layout(flow)
    pairs = {(e.source, e.target) for e in edges}
    for name, step in flow.steps.items():
        for target in step.edges().values():
            assert (name, target) in pairs
    paths = ET.fromstring(svg.render(flow)).findall(".//svg:path[@class='edge']", NS)
    assert len(paths) == len(edges)


def test_forward_edges_go_down_and_back_edges_are_dashed(flowset):
    flow = flowset.flows["respect-phoneline"]
    nodes, edges, _, _ = svg.layout(flow)
    back = [(e.source, e.target) for e in edges if e.back]
    assert back == [("website", "main-menu")]
    for edge in edges:
        if not edge.back:
            assert nodes[edge.target].layer > nodes[edge.source].layer
    dashed = ET.fromstring(svg.render(flow)).findall(".//svg:path[@stroke-dasharray]", NS)
    assert len(dashed) == 1


def test_steps_in_a_row_do_not_overlap(flow):
    nodes, _, width, height = svg.layout(flow)
    rows: dict[int, list] = {}
    for node in nodes.values():
        rows.setdefault(node.layer, []).append(node)
        assert node.left >= 0 and node.right <= width
        assert node.y >= 0 and node.y + svg.NODE_HEIGHT <= height
    for row in rows.values():
        row.sort(key=lambda n: n.x)
        for left, right in zip(row, row[1:], strict=False):
            assert left.right + svg.COLUMN_GAP <= right.left + 0.01


def test_parallel_edges_share_one_label(flowset):
    _, edges, _, _ = svg.layout(flowset.flows["mens-advice-line"])
    menu = next(e for e in edges if (e.source, e.target) == ("main-menu", "connect"))
    assert menu.text == "press 1 / no key / wrong key"


@pytest.mark.parametrize(("label", "words"), [
    ("next", ""), ("option '1'", "press 1"), ("option '*'", "press *"),
    ("on_no_input", "no key"), ("on_invalid", "wrong key"), ("on_no_answer", "no answer"),
    ("open", "open"), ("closed", "closed"), ("some_new_edge", "some new edge"),
])
def test_edge_labels_read_as_words(label, words):
    assert svg.edge_words(label) == words


def test_nothing_a_strict_csp_refuses(flow):
    document = svg.render(flow)
    assert "style=" not in document and "<style" not in document
    assert "<script" not in document and " on" not in document.replace(" one", "")
    assert "http://" not in document.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_ids_are_prefixed_so_two_diagrams_share_a_page(flowset):
    first = svg.render(flowset.flows["respect-phoneline"], id_prefix="a")
    second = svg.render(flowset.flows["mens-advice-line"], id_prefix="b")
    ids = [e.get("id") for doc in (first, second) for e in ET.fromstring(doc).iter()
           if e.get("id")]
    assert len(ids) == len(set(ids))
    assert 'marker-end="url(#a-arrow)"' in first


def test_text_is_escaped(flowset):
    import dataclasses

    flow = dataclasses.replace(flowset.flows["respect-phoneline"], helpline="<Line & Co>")
    document = svg.render(flow)
    ET.fromstring(document)
    assert "&lt;Line &amp; Co&gt;" in document


def test_the_description_says_the_diagram_in_words(flowset):
    words = svg.description(flowset.flows["respect-phoneline"])
    assert words.startswith("Calls to Respect Phoneline start at welcome.")
    assert "main-menu (press 2) goes to website." in words


def test_the_cli_draws_the_same_svg(runner, flowset):
    from webhooks.cli import cli

    result = runner.invoke(cli, ["graph", "respect-phoneline", "--format", "svg",
                                  "--flows", str(FLOWS)])
    assert result.exit_code == 0, result.output
    assert result.output == draw(flowset.flows["respect-phoneline"], "svg")
    ET.fromstring(result.output)
