"""The benchmark's case selection and argument checks (CPU): --shape, --cases, and the value lists."""
import pytest
import torch

from bench.__main__ import main
from bench.shapes import HEADLINE, SWEEP, Case, parse_shape, select_cases


def test_parse_shape_reads_every_field_and_defaults():
    c = parse_shape("1,32,8,128,128,128,3,1,1")
    sr = next(s for s in SWEEP if s.name == "sr-head")
    assert (c.n, c.c_in, c.c_out, c.spatial, c.k, c.stride, c.padding, c.output_padding) == \
        (sr.n, sr.c_in, sr.c_out, sr.spatial, sr.k, sr.stride, sr.padding, sr.output_padding)
    assert c.flops == sr.flops and c.name == "N1-32to8-128x128x128-k3s1p1"
    d = parse_shape(" 2, 64, 32, 16, 24, 40, 5 ")  # stride 1, padding 0, output_padding 0
    assert (d.spatial, d.k, d.stride, d.padding, d.output_padding) == ((16, 24, 40), 5, 1, 0, 0)
    e = parse_shape("2,64,32,32,32,32,3,2,1,1")
    assert (e.stride, e.padding, e.output_padding) == (2, 1, 1) and e.name.endswith("op1")


@pytest.mark.parametrize("spec, match", [
    ("2,64,32,32,32,32", "7 to 10 integers"),
    ("2,64,32,32,32,32,3,2,1,1,0", "7 to 10 integers"),
    ("2,64,32,32,32,32,3.0", "integers"),
    ("2,0,32,32,32,32,3", ">= 1"),
    ("2,64,32,32,32,32,3,1,-1", ">= 0"),
    ("2,64,32,32,32,32,3,2,1,2", "smaller than stride"),
    ("1,8,8,1,1,1,1,1,1", "empty"),
])
def test_parse_shape_refuses_bad_specs_naming_the_flag(spec, match):
    with pytest.raises(ValueError, match=match) as e:
        parse_shape(spec)
    assert "--shape" in str(e.value)


def test_select_cases():
    assert select_cases() == (HEADLINE,)
    assert select_cases(sweep=True) == SWEEP
    # sweep order, whatever order the names come in; shapes after them
    picked = select_cases(True, "sr-head,unet3d-dec1", ["2,64,32,8,8,8,3,2,1"])
    assert [c.name for c in picked] == ["unet3d-dec1", "sr-head", "N2-64to32-8x8x8-k3s2p1"]
    assert [c.name for c in select_cases(False, None, ["2,64,32,8,8,8,3"])] == ["N2-64to32-8x8x8-k3s1p0"]
    with pytest.raises(ValueError, match="unknown case.*sr-haed.*known: headline"):
        select_cases(True, "sr-head,sr-haed")


@pytest.mark.parametrize("argv, message", [
    (["--cases", "nope"], "--cases: unknown case(s) nope"),
    (["--shape", "1,2,3"], "--shape '1,2,3'"),
    (["--layouts", "NDHWC,NHWC"], "--layouts: NHWC not among NCDHW, NDHWC"),
    (["--precisions", "fp16"], "--precisions: fp16 not among tf32, fp32, 3xtf32"),
    (["--passes", "backward"], "--passes: backward not among forward, grad_input, grad_weight, step"),
])
def test_bad_arguments_fail_before_any_gpu_work(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU these arguments would run the benchmark")
def test_good_arguments_pass_the_checks(capsys):
    # the defaults and a full set of valid values get as far as the GPU check (exit 2, its own message)
    for argv in ([], ["--sweep", "--cases", "headline,sr-head", "--shape", "2,64,32,8,8,8,3,2,1,1",
                      "--precisions", "3xtf32,fp32", "--layouts", "NDHWC", "--passes", "forward,step"]):
        assert main(argv) == 2
        assert "needs a CUDA GPU" in capsys.readouterr().err


def test_cases_reach_the_defaults_worker_whole():
    # bench.cudnn_defaults runs in its own process and rebuilds the case from JSON: a --shape case is in no
    # table it could look up by name (call555 failed there on the GPU).
    import json
    for case in (parse_shape("1,32,8,96,96,96,5,1,2"), parse_shape("2,64,32,8,8,8,3,2,1,1"), SWEEP[-1]):
        back = Case.from_json(json.loads(json.dumps(case.to_json())))
        assert back == case and back.spatial == case.spatial and isinstance(back.spatial, tuple)


def test_case_problem_carries_every_field():
    from convt3d_cutlass.problem import Problem
    for c in list(SWEEP) + [HEADLINE, parse_shape("2,32,1,8,9,10,3,2,1,1")]:
        assert c.problem() == Problem(c.n, c.c_in, c.c_out, c.spatial, c.k, c.stride, c.padding, c.output_padding)
        assert c.flops == c.problem().flops()
