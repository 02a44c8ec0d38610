"""labeltree.evaluate.protocols: one Rules object per evaluation, resolved once, its overrides and checks."""

import pytest

from labeltree.errors import LabeltreeError
from labeltree.evaluate.protocols import PAPER_PIXEL_SIZE, Rules, resolve_rules, rules_for


def test_official_and_paper_rules_per_dataset():
    cs = resolve_rules("official", "cityscapes")
    assert (cs.protocol, cs.classes, cs.mean_over, cs.drop, cs.sign_rule) == ("official", "official", "defined",
                                                                             "none", False)
    vi = resolve_rules("official", "vistas")
    assert (vi.mean_over, vi.drop) == ("defined", "unevaluated")
    gt = resolve_rules("official", "gtsdb")  # no official tool: the paper's rules, said so
    assert (gt.protocol, gt.classes, gt.drop, gt.sign_rule) == ("paper", "paper", "foreign", True)
    assert "no official pixel-level evaluation tool" in gt.note
    assert (gt.min_pixels, gt.pixel_size, gt.dataset) == (1000, PAPER_PIXEL_SIZE, "gtsdb")


def test_overrides_are_listed_and_the_legacy_switch_maps_to_drop_and_sign_rule():
    r = resolve_rules("official", "cityscapes", classes="all", mean_over="defined", paper_protocol=True)
    assert r.overrides == ("classes=all", "drop=foreign", "sign_rule=True")  # mean_over unchanged: not listed
    assert r.given == ("classes", "mean_over", "drop", "sign_rule")
    off = resolve_rules("paper", "cityscapes", paper_protocol=False, drop="unevaluated")
    assert (off.drop, off.sign_rule) == ("unevaluated", False)  # an explicit drop wins over the switch
    assert resolve_rules("official", "cityscapes", classes=[7, 8]).classes == (7, 8)


def test_as_dict_is_the_json_rules_and_leaves_out_how_pixels_are_counted():
    r = resolve_rules("paper", "gtsdb", min_pixels=50, pixel_size=None)
    d = r.as_dict()
    assert set(d) == {"protocol", "tool", "classes", "mean_over", "drop", "sign_rule", "path", "outside",
                      "absent_zero", "missing_ignored", "eval_size", "requested", "overrides", "note"}
    assert (d["outside"], d["absent_zero"], d["missing_ignored"]) == ("refuse", False, False)
    b = resolve_rules("official", "bdd100k").as_dict()
    assert (b["outside"], b["absent_zero"], b["missing_ignored"]) == ("ignore", True, True)
    assert (r.min_pixels, r.pixel_size) == (50, None)
    assert Rules(**{**d, "overrides": tuple(d["overrides"])}).describe() == r.describe()


def test_rules_for_takes_a_name_or_an_object_once():
    r = resolve_rules("paper", "cityscapes", classes="all")
    assert rules_for(r, "cityscapes") is r
    assert rules_for("paper", "cityscapes", classes="all") == r
    with pytest.raises(LabeltreeError, match=r"not both \(classes\)"):
        rules_for(r, "cityscapes", classes="official")
    with pytest.raises(LabeltreeError, match="resolved for 'cityscapes', not 'vistas'"):
        rules_for(r, "vistas")
    with pytest.raises(LabeltreeError, match="protocol name"):
        rules_for(3, "cityscapes")


@pytest.mark.parametrize("kw,msg", [({"protocol": "exact"}, "--protocol must be one of official, paper"),
                                    ({"drop": "some"}, "drop rule must be one of none, foreign, unevaluated"),
                                    ({"mean_over": "all"}, "mean over must be 'gt' or 'defined'"),
                                    ({"min_pixels": -1}, "--min-pixels must be an integer >= 0"),
                                    ({"pixel_size": (0, 5)}, "pixel size must be positive"),
                                    ({"pixel_size": "big"}, r"pixel size must be \(H, W\)")])
def test_bad_rules_are_refused(kw, msg):
    args = {"protocol": "official", "dataset": "cityscapes", **kw}
    with pytest.raises(LabeltreeError, match=msg):
        resolve_rules(**args)
