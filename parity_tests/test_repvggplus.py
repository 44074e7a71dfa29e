"""RepVGGplus: official structure, outputs by mode, whole-model parity, official deploy state dict,
the training loss with aux heads, custom L2, and gradient checkpointing (RepVGG and RepVGGplus).

The block-level checks of RepVGGplusBlock run in test_block_parity.py (REPVGGPLUS_CASES of
block_cases.py). Whole-model parity runs on a narrow RepVGGplus with the official layout
(post-SE everywhere, an odd stage 3 split in two, all three aux heads); the full L2pse is
built on torch's meta device / under ``paddle.LazyGuard`` for its counts and keys, and
really only in ``slow`` tests.
"""

import copy

import numpy as np
import paddle
import pytest
import torch

import paddle_rep
import torch_ref
from paddle_rep.core import interop
from paddle_rep.models._specs import groups_map
from parity_tests import helpers
from parity_tests.helpers import assert_all_close, measure

NUM_CLASSES = 10
SMALL = {"num_blocks": [2, 2, 3, 1], "width_multiplier": [0.25, 0.25, 0.25, 0.5], "use_post_se": True}
AUX_KEYS = ["stage1_aux", "stage2_aux", "stage3_first_aux"]
OUTPUT_KEYS = ["main", *AUX_KEYS]
BN_LEAVES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _small(framework: str, deploy: bool = False, use_checkpoint: bool = False):
    cls = torch_ref.models.RepVGGplus if framework == "torch" else paddle_rep.models.RepVGGplus
    return cls(num_classes=NUM_CLASSES, deploy=deploy, use_checkpoint=use_checkpoint, **SMALL)


def _pair(dtype: str, seed: int = 0):
    return helpers.make_pair(lambda: _small("torch"), lambda: _small("paddle"), dtype, seed)


def _official_keys(num_blocks: list[int], width_multiplier: list[float], deploy: bool) -> list[str]:
    """Upstream RepVGGplus's state-dict keys in order, written out from repvggplus.py's structure."""
    widths = [int(w * m) for w, m in zip((64, 128, 256, 512), width_multiplier, strict=True)]
    first = num_blocks[2] // 2
    stages = [("stage1", min(64, widths[0]), widths[0], num_blocks[0], 2),
              ("stage2", widths[0], widths[1], num_blocks[1], 2),
              ("stage3_first", widths[1], widths[2], first, 2),
              ("stage3_second", widths[2], widths[2], num_blocks[2] - first, 1),
              ("stage4", widths[2], widths[3], num_blocks[3], 2)]

    def block(prefix: str, identity: bool) -> list[str]:
        keys = [f"{prefix}.post_se.{p}.{leaf}" for p in ("down", "up") for leaf in ("weight", "bias")]
        if deploy:
            return keys + [f"{prefix}.rbr_reparam.weight", f"{prefix}.rbr_reparam.bias"]
        if identity:
            keys += [f"{prefix}.rbr_identity.{leaf}" for leaf in BN_LEAVES]
        for branch in ("rbr_dense", "rbr_1x1"):
            keys += [f"{prefix}.{branch}.conv.weight"] + [f"{prefix}.{branch}.bn.{leaf}" for leaf in BN_LEAVES]
        return keys

    keys = block("stage0", identity=False)
    for name, cin, cout, n, stride in stages:
        for i in range(n):
            keys += block(f"{name}.blocks.{i}", identity=(cin if i == 0 else cout) == cout and (i > 0 or stride == 1))
    keys += ["linear.weight", "linear.bias"]
    if not deploy:
        for aux in AUX_KEYS:
            keys += [f"{aux}.0.conv.weight"] + [f"{aux}.0.bn.{leaf}" for leaf in BN_LEAVES]
            keys += [f"{aux}.3.weight", f"{aux}.3.bias"]
    return keys


def _paddle_keys_as_torch(model: paddle.nn.Layer) -> list[str]:
    return [interop.paddle_key_to_torch(k) for k in model.state_dict()]


def _without_counter(keys: list[str]) -> list[str]:
    return [k for k in keys if not k.endswith("num_batches_tracked")]


# ---------------------------------------------------------------- official structure

L2PSE = {"num_blocks": [8, 14, 24, 1], "width_multiplier": [2.5, 2.5, 2.5, 5]}
# Official RepVGGplus-L2pse: trainable params and state-dict keys (incl. num_batches_tracked).
L2PSE_COUNTS = {False: (146_062_864, 1009), True: (127_151_960, 290)}


@pytest.mark.parametrize("deploy", [False, True], ids=["train", "deploy"])
def test_l2pse_official_counts_and_key_order(deploy: bool) -> None:
    with torch.device("meta"):
        torch_model = torch_ref.create_model("repvggplus_l2pse", deploy=deploy)
    with paddle.LazyGuard():
        paddle_model = paddle_rep.create_model("repvggplus_l2pse", deploy=deploy)
    params, keys = L2PSE_COUNTS[deploy]
    assert sum(p.numel() for p in torch_model.parameters() if p.requires_grad) == params
    assert sum(int(np.prod(p.shape)) for p in paddle_model.parameters() if not p.stop_gradient) == params
    torch_keys = list(torch_model.state_dict())
    assert len(torch_keys) == keys
    expected = _official_keys(deploy=deploy, **L2PSE)
    assert torch_keys == expected
    assert _paddle_keys_as_torch(paddle_model) == _without_counter(expected)
    shapes = {k: tuple(v.shape) for k, v in torch_model.state_dict().items()}
    assert shapes["stage0.post_se.down.weight"] == (16, 64, 1, 1)  # SE width out // 4
    assert shapes["stage4.blocks.0.post_se.up.weight"] == (2560, 640, 1, 1)
    assert shapes["linear.weight"] == (1000, 2560)
    if not deploy:
        assert shapes["stage3_first_aux.0.conv.weight"] == (640, 640, 3, 3)
        assert shapes["stage1_aux.3.weight"] == (1000, 160)
        assert shapes["stage3_second.blocks.0.rbr_identity.weight"] == (640,)


def test_official_key_generator_can_fail() -> None:
    """Negative control: the generator tells a RepVGG-style key list (no split stage 3) apart."""
    with torch.device("meta"):
        plain = torch_ref.create_model("repvgg_d2se")
    assert list(plain.state_dict()) != _official_keys(deploy=False, **L2PSE)
    assert _official_keys(deploy=False, **L2PSE) != _official_keys(deploy=True, **L2PSE)


@pytest.mark.parametrize("framework", ["torch", "paddle"])
def test_small_model_keys_are_official(framework: str) -> None:
    expected = _official_keys(deploy=False, **{k: SMALL[k] for k in ("num_blocks", "width_multiplier")})
    model = _small(framework)
    if framework == "torch":
        assert list(model.state_dict()) == expected
    else:
        assert _paddle_keys_as_torch(model) == _without_counter(expected)


# ---------------------------------------------------------------- outputs by mode

@pytest.mark.parametrize("framework", ["torch", "paddle"])
def test_outputs_by_mode(framework: str) -> None:
    """train: upstream's dict; eval: the main logits; fused or deploy=True: the main logits in either mode."""
    lib_no_grad = torch.no_grad if framework == "torch" else paddle.no_grad
    x_np = helpers.seeded_input((2, 3, 32, 32), "float32", 3)
    x = torch.from_numpy(x_np) if framework == "torch" else paddle.to_tensor(x_np)
    model = _small(framework)
    model.train()
    with lib_no_grad():
        outputs = model(x)
    assert isinstance(outputs, dict) and list(outputs) == OUTPUT_KEYS
    assert all(tuple(v.shape) == (2, NUM_CLASSES) for v in outputs.values())
    model.eval()
    with lib_no_grad():
        logits = model(x)
    assert not isinstance(logits, dict) and tuple(logits.shape) == (2, NUM_CLASSES)
    fuse = torch_ref.reparameterize_model if framework == "torch" else paddle_rep.reparameterize_model
    fused = fuse(model)
    assert not any(hasattr(fused, name) for name in AUX_KEYS) and fused.deploy
    for built in (fused, _small(framework, deploy=True)):
        built.train()
        with lib_no_grad():
            out = built(x)
        assert not isinstance(out, dict) and tuple(out.shape) == (2, NUM_CLASSES)


# ---------------------------------------------------------------- whole-model parity

def _torch_outputs(model, x: np.ndarray):
    out = model(torch.from_numpy(x))
    return out if isinstance(out, dict) else {"main": out}


def test_train_mode_dict_outputs_loss_and_gradients_match_float64() -> None:
    """Training mode: all four outputs, the loss CE(main) + 0.1 * sum(CE(aux)), the input and every
    parameter gradient (aux heads included), paddle vs torch in float64."""
    torch_model, paddle_model = _pair("float64")
    torch_model.train()
    paddle_model.train()
    x = helpers.seeded_input((4, 3, 32, 32), "float64", 1)
    labels = np.random.default_rng(2).integers(0, NUM_CLASSES, 4)
    xt = torch.tensor(x, requires_grad=True)
    torch_out = torch_model(xt)
    torch_loss = torch_ref.classification_loss(torch_out, torch.from_numpy(labels))
    torch_loss.backward()
    xp = paddle.to_tensor(x, stop_gradient=False)
    paddle_out = paddle_model(xp)
    paddle_loss = paddle_rep.classification_loss(paddle_out, paddle.to_tensor(labels))
    paddle_loss.backward()
    assert list(paddle_out) == list(torch_out) == OUTPUT_KEYS
    results = [measure(f"train output {k}", paddle_out[k], torch_out[k], "model_train", "float64")
               for k in OUTPUT_KEYS]
    results.append(measure("loss", paddle_loss, torch_loss.detach(), "model_train", "float64"))
    results.append(measure("input grad", xp.grad, xt.grad, "model_train", "float64"))
    paddle_grads = interop.to_torch({n: p.grad for n, p in paddle_model.named_parameters() if not p.stop_gradient},
                                    dtype=None, num_batches_tracked=None)
    torch_grads = {n: p.grad for n, p in torch_model.named_parameters()}
    assert set(paddle_grads) == set(torch_grads)
    assert any(k.startswith("stage3_first_aux.") for k in torch_grads)
    results += [measure(f"grad {k}", paddle_grads[k], torch_grads[k], "model_train", "float64")
                for k in sorted(torch_grads)]
    assert_all_close(results)


@pytest.mark.parametrize("framework", ["torch", "paddle"])
def test_loss_is_main_plus_tenth_of_each_aux(framework: str) -> None:
    """The dict loss equals the hand-written formula, and the aux terms matter (negative control)."""
    rng = np.random.default_rng(4)
    logits = {k: rng.normal(0, 2, (6, NUM_CLASSES)) for k in OUTPUT_KEYS}
    labels = rng.integers(0, NUM_CLASSES, 6)

    def ce(z: np.ndarray) -> float:
        z = z - z.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(labels)), labels]))

    expected = ce(logits["main"]) + 0.1 * sum(ce(logits[k]) for k in AUX_KEYS)
    if framework == "torch":
        loss_fn, wrap = torch_ref.classification_loss, torch.from_numpy
    else:
        loss_fn, wrap = paddle_rep.classification_loss, paddle.to_tensor
    got = float(loss_fn({k: wrap(v) for k, v in logits.items()}, wrap(labels)))
    main_only = float(loss_fn(wrap(logits["main"]), wrap(labels)))
    assert abs(got - expected) <= 1e-12 * abs(expected)
    assert abs(main_only - ce(logits["main"])) <= 1e-12 * abs(expected)
    assert abs(main_only - expected) > 1e-3, "aux terms had no effect"
    with pytest.raises(ValueError, match="L2"):
        loss_fn({"main": wrap(logits["main"]), "L2": wrap(logits["main"])}, wrap(labels))


def test_eval_and_fused_outputs_match_float32() -> None:
    torch_model, paddle_model = _pair("float32")
    x = helpers.seeded_input((2, 3, 32, 32), "float32", 5)
    paddle_eval, torch_eval = helpers.eval_outputs(torch_model, paddle_model, x)
    torch_fused = torch_ref.reparameterize_model(torch_model)
    paddle_fused = paddle_rep.reparameterize_model(paddle_model)
    paddle_out, torch_out = helpers.eval_outputs(torch_fused, paddle_fused, x)
    other, _ = _pair("float32", seed=1)
    _, control = helpers.eval_outputs(other, paddle_model, x)
    assert not measure("control", paddle_eval, control, "output", "float32").ok, "other weights passed"
    assert_all_close([
        measure("eval paddle vs torch", paddle_eval, torch_eval, "output", "float32"),
        measure("torch fused vs eval", torch_out, torch_eval, "fused_vs_eval", "float32"),
        measure("paddle fused vs eval", paddle_out, paddle_eval, "fused_vs_eval", "float32"),
        measure("paddle fused vs torch fused", paddle_out, torch_out, "output", "float32"),
    ])
    torch_state = torch_fused.state_dict()
    paddle_state = interop.to_torch(paddle_fused.state_dict(), dtype=None, num_batches_tracked=None)
    assert list(paddle_state) == list(torch_state)
    assert_all_close([measure(f"fused {k}", paddle_state[k], torch_state[k], "fused_kernel", "float32")
                      for k in torch_state])


def _upstream_style_deploy_state(torch_train: torch.nn.Module) -> dict:
    """What upstream tools/convert.py saves: switch_repvggplus_to_deploy() on the train model
    (no .eval() call), then state_dict()."""
    model = copy.deepcopy(torch_train)
    model.switch_repvggplus_to_deploy()
    return model.state_dict()


def _check_official_deploy_state(torch_train, build_torch_deploy, build_paddle_deploy, keys_expected, x) -> None:
    state = _upstream_style_deploy_state(torch_train)
    assert list(state) == keys_expected
    torch_deploy = build_torch_deploy()
    torch_deploy.load_state_dict(state, strict=True)
    paddle_deploy = build_paddle_deploy()
    missing, unexpected = paddle_deploy.set_state_dict(interop.from_torch(state))
    assert not missing and not unexpected, f"missing {missing}, unexpected {unexpected}"
    torch_train.eval()
    with torch.no_grad():
        reference = torch_train(torch.from_numpy(x)).numpy()
    actual, expected = helpers.eval_outputs(torch_deploy, paddle_deploy, x)
    assert_all_close([
        measure("torch deploy vs torch train-form eval", expected, reference, "fused_vs_eval", "float32"),
        measure("paddle deploy vs torch deploy", actual, expected, "output", "float32"),
    ])


def test_official_deploy_state_dict_loads_strictly_small() -> None:
    torch_model, _ = _pair("float32")
    expected = _official_keys(deploy=True, **{k: SMALL[k] for k in ("num_blocks", "width_multiplier")})
    _check_official_deploy_state(torch_model, lambda: _small("torch", deploy=True),
                                 lambda: _small("paddle", deploy=True), expected,
                                 helpers.seeded_input((2, 3, 32, 32), "float32", 6))


@pytest.mark.slow
def test_official_deploy_state_dict_loads_strictly_l2pse() -> None:
    """Full size: a torch_ref L2pse train model converted as upstream loads into both deploy models."""
    torch.manual_seed(0)
    torch_model = torch_ref.create_model("repvggplus_l2pse", num_classes=NUM_CLASSES)
    helpers.randomize_bn(torch_model, np.random.default_rng(0))
    _check_official_deploy_state(
        torch_model, lambda: torch_ref.create_model("repvggplus_l2pse", num_classes=NUM_CLASSES, deploy=True),
        lambda: paddle_rep.create_model("repvggplus_l2pse", num_classes=NUM_CLASSES, deploy=True),
        _official_keys(deploy=True, **L2PSE), helpers.seeded_input((2, 3, 64, 64), "float32", 7))


@pytest.mark.slow
def test_l2pse_eval_and_fused_parity_full_size() -> None:
    torch_model, paddle_model = helpers.make_pair(
        lambda: torch_ref.create_model("repvggplus_l2pse", num_classes=NUM_CLASSES),
        lambda: paddle_rep.create_model("repvggplus_l2pse", num_classes=NUM_CLASSES), "float32", 0)
    x = helpers.seeded_input((2, 3, 64, 64), "float32", 8)
    paddle_eval, torch_eval = helpers.eval_outputs(torch_model, paddle_model, x)
    paddle_fused, torch_fused = helpers.eval_outputs(torch_ref.reparameterize_model(torch_model),
                                                     paddle_rep.reparameterize_model(paddle_model), x)
    assert_all_close([
        measure("eval paddle vs torch", paddle_eval, torch_eval, "network_output", "float32"),
        measure("torch fused vs eval", torch_fused, torch_eval, "fused_vs_eval", "float32"),
        measure("paddle fused vs torch fused", paddle_fused, torch_fused, "network_output", "float32"),
    ])


def test_custom_l2_matches_torch_and_sums_every_block() -> None:
    torch_model, paddle_model = _pair("float64")
    torch_l2, paddle_l2 = torch_model.get_custom_L2(), paddle_model.get_custom_L2()
    per_block = sum(float(b.get_custom_L2().detach()) for b in torch_model.rep_blocks())
    assert len(torch_model.rep_blocks()) == 1 + sum(SMALL["num_blocks"])
    assert abs(float(torch_l2.detach()) - per_block) <= 1e-12 * abs(per_block)
    plain_l2 = sum(float((p.detach() ** 2).sum()) for n, p in torch_model.named_parameters()
                   if n.endswith("conv.weight") and ("rbr_dense" in n or "rbr_1x1" in n))
    assert abs(plain_l2 - per_block) > 1e-6 * abs(per_block), "custom L2 equals plain L2: BN scaling not applied"
    assert_all_close([measure("custom L2", paddle_l2, torch_l2.detach(), "output", "float64")])


# ---------------------------------------------------------------- gradient checkpointing

def _mini_repvgg(framework: str, use_checkpoint: bool):
    cls = torch_ref.models.RepVGG if framework == "torch" else paddle_rep.models.RepVGG
    return cls([2, 2, 2, 1], num_classes=NUM_CLASSES, width_multiplier=[0.25, 0.25, 0.25, 0.5],
               override_groups_map=groups_map(2), use_se=True, use_checkpoint=use_checkpoint)


CHECKPOINT_NETS = {"repvgg": _mini_repvgg, "repvggplus": lambda fw, on: _small(fw, use_checkpoint=on)}


def _first_stage_block(model):
    """stage1's first block (checkpointed when use_checkpoint); a pre-hook counts its forward calls
    (torch's non-reentrant recompute stops early, so a post-hook would miss the recomputation)."""
    return model.stage1.blocks[0] if hasattr(model.stage1, "blocks") else model.stage1[0]


def _torch_step(model, x: np.ndarray, labels: np.ndarray, counter: list) -> tuple[dict, dict]:
    handle = _first_stage_block(model).register_forward_pre_hook(lambda *_: counter.append(1))
    model.train()
    xt = torch.tensor(x, requires_grad=True)
    out = model(xt)
    torch_ref.classification_loss(out, torch.from_numpy(labels)).backward()
    handle.remove()
    outs = out if isinstance(out, dict) else {"main": out}
    grads = {n: p.grad.numpy().copy() for n, p in model.named_parameters()}
    grads["<input>"] = xt.grad.numpy()
    return {k: v.detach().numpy() for k, v in outs.items()}, grads


def _paddle_step(model, x: np.ndarray, labels: np.ndarray, counter: list) -> tuple[dict, dict]:
    handle = _first_stage_block(model).register_forward_pre_hook(lambda *_: counter.append(1))
    model.train()
    xp = paddle.to_tensor(x, stop_gradient=False)
    out = model(xp)
    paddle_rep.classification_loss(out, paddle.to_tensor(labels)).backward()
    handle.remove()
    outs = out if isinstance(out, dict) else {"main": out}
    grads = {n: p.grad.numpy() for n, p in model.named_parameters() if not p.stop_gradient}
    grads["<input>"] = xp.grad.numpy()
    return {k: v.numpy() for k, v in outs.items()}, grads


@pytest.mark.parametrize("framework", ["torch", "paddle"])
@pytest.mark.parametrize("net", sorted(CHECKPOINT_NETS))
def test_use_checkpoint_same_outputs_gradients_and_keys(net: str, framework: str) -> None:
    """use_checkpoint=True: the same state-dict keys, bitwise the same outputs, gradients and BN statistics
    after a step, and the checkpointed block really runs twice per step (recomputed in the backward pass)."""
    build = CHECKPOINT_NETS[net]
    if framework == "torch":
        torch.manual_seed(0)
        plain, checkpointed = build("torch", False), build("torch", True)
        helpers.randomize_bn(plain, np.random.default_rng(0))
        checkpointed.load_state_dict(plain.state_dict(), strict=True)
        step = _torch_step
    else:
        paddle.seed(0)
        plain, checkpointed = build("paddle", False), build("paddle", True)
        missing, unexpected = checkpointed.set_state_dict(plain.state_dict())
        assert not missing and not unexpected
        step = _paddle_step
    assert list(plain.state_dict()) == list(checkpointed.state_dict())
    x = helpers.seeded_input((4, 3, 32, 32), "float32", 9)
    labels = np.random.default_rng(9).integers(0, NUM_CLASSES, 4)
    calls_plain, calls_checkpointed = [], []
    plain_out, plain_grads = step(plain, x, labels, calls_plain)
    ckpt_out, ckpt_grads = step(checkpointed, x, labels, calls_checkpointed)
    assert len(calls_plain) == 1 and len(calls_checkpointed) == 2, (calls_plain, calls_checkpointed)
    assert list(plain_out) == list(ckpt_out) and set(plain_grads) == set(ckpt_grads)
    for k in plain_out:
        np.testing.assert_array_equal(ckpt_out[k], plain_out[k], err_msg=f"output {k}")
    for k in plain_grads:
        np.testing.assert_array_equal(ckpt_grads[k], plain_grads[k], err_msg=f"grad {k}")
    # The recomputation must not update the BN running statistics a second time (upstream's does).
    plain_state, ckpt_state = plain.state_dict(), checkpointed.state_dict()
    for k in plain_state:
        np.testing.assert_array_equal(helpers.as_numpy(ckpt_state[k]), helpers.as_numpy(plain_state[k]),
                                      err_msg=f"state {k} after one step")
    # Eval and no-grad calls run plainly (no recompute wrapper to trace at export).
    calls = []
    checkpointed.eval()
    handle = _first_stage_block(checkpointed).register_forward_pre_hook(lambda *_: calls.append(1))
    if framework == "torch":
        with torch.no_grad():
            checkpointed(torch.from_numpy(x))
    else:
        with paddle.no_grad():
            checkpointed(paddle.to_tensor(x))
    handle.remove()
    assert len(calls) == 1


@pytest.mark.parametrize("framework", ["torch", "paddle"])
def test_builders_take_use_checkpoint(framework: str) -> None:
    lib = torch_ref if framework == "torch" else paddle_rep
    for name in ("repvgg_a0", "repvggplus_l2pse"):
        if framework == "torch":
            with torch.device("meta"):
                model = lib.create_model(name, use_checkpoint=True)
        else:
            with paddle.LazyGuard():
                model = lib.create_model(name, use_checkpoint=True)
        flags = [m.use_checkpoint for m in (model.modules() if framework == "torch" else model.sublayers(True))
                 if hasattr(m, "use_checkpoint")]
        assert flags and all(flags), name


# ---------------------------------------------------------------- training loop and export

def test_paddle_rep_train_handles_dict_outputs(tmp_path, monkeypatch) -> None:
    """``paddle-rep train`` (paddle_rep.apps.train) on RepVGGplus: aux loss in training, logits in eval, fused save."""
    pytest.importorskip("sklearn", reason="the digits data set ships with scikit-learn (test extra)")
    from paddle_rep.apps import train as train_mod

    monkeypatch.setattr(train_mod, "create_model", lambda arch, num_classes: _small("paddle"))
    metrics = train_mod.train(train_mod.TrainConfig(arch="repvggplus_l2pse", epochs=1, steps=2, batch_size=16),
                              tmp_path)
    assert metrics["steps"] == 2 and all(np.isfinite(metrics["losses"]))
    assert 0.0 <= metrics["deploy_accuracy"] <= 1.0
    deployed = paddle.load(str(tmp_path / "model_deploy.pdparams"))
    assert not any(k.startswith(tuple(AUX_KEYS)) for k in deployed)
    assert any(k.startswith("stage1_aux.") for k in paddle.load(str(tmp_path / "model.pdparams")))


def test_export_of_repvggplus_matches_dygraph(tmp_path) -> None:
    """The exported (fused) RepVGGplus answers two different inputs and batch sizes like the dygraph model."""
    from paddle_rep.apps.exporter import export
    from paddle_rep.apps.predictor import Predictor

    _, paddle_model = _pair("float32")
    exported = export(paddle_model, tmp_path / "plus", "3,32,32")
    predictor = Predictor(exported)
    paddle_model.eval()
    for batch, seed in ((2, 10), (3, 11)):
        x = helpers.seeded_input((batch, 3, 32, 32), "float32", seed)
        with paddle.no_grad():
            expected = paddle_model(paddle.to_tensor(x)).numpy()
        helpers.assert_close(f"predictor batch {batch}", predictor(x), expected, "static_graph_onednn", "float32")


@pytest.mark.slow
def test_convert_l2pse_train_and_official_deploy_checkpoints(tmp_path, capsys) -> None:
    """``paddle-rep convert --arch repvggplus_l2pse``: the train checkpoint with --deploy --verify, and the
    deploy checkpoint that upstream tools/convert.py writes, with --verify (full size: ~0.6 GB each)."""
    from paddle_rep.apps.cli import main

    torch.manual_seed(0)
    model = torch_ref.create_model("repvggplus_l2pse", num_classes=NUM_CLASSES)
    helpers.randomize_bn(model, np.random.default_rng(0))
    train_file, deploy_file = tmp_path / "train.pth", tmp_path / "deploy.pth"
    torch.save({"model": model.state_dict()}, train_file)
    torch.save(_upstream_style_deploy_state(model), deploy_file)
    del model
    for src, extra in ((train_file, ["--deploy"]), (deploy_file, [])):
        dst = tmp_path / f"{src.stem}_out.pdparams"
        code = main(["convert", str(src), str(dst), "--arch", "repvggplus_l2pse", "--verify", "--input-size", "64",
                     *extra])
        out = capsys.readouterr().out
        assert code == 0, out
        keys = list(paddle.load(str(dst)))
        assert any("rbr_reparam" in k for k in keys) and not any(k.startswith(tuple(AUX_KEYS)) for k in keys)


@pytest.mark.parametrize("framework", ["torch", "paddle"])
def test_bad_arguments_raise_value_errors_naming_them(framework: str) -> None:
    block_cls = torch_ref.RepVGGplusBlock if framework == "torch" else paddle_rep.RepVGGplusBlock
    with pytest.raises(ValueError, match="use_post_se needs out_channels >= 4"):
        block_cls(3, 3, 3, padding=1, use_post_se=True)
    with pytest.raises(ValueError, match="padding=1"):
        block_cls(8, 8, 3, padding=0)
    cls = torch_ref.models.RepVGGplus if framework == "torch" else paddle_rep.models.RepVGGplus
    with pytest.raises(ValueError, match=r"num_blocks\[2\]"):
        cls([2, 2, 1, 1], NUM_CLASSES, [0.25, 0.25, 0.25, 0.5])
    with pytest.raises(ValueError, match="width_multiplier"):
        cls([2, 2, 2, 1], NUM_CLASSES, [0.25, 0.25, 0.25])
    block = block_cls(8, 8, 3, padding=1)
    x = np.zeros((1, 4, 5, 5), "float32")
    with pytest.raises(ValueError, match="RepVGGplusBlock"):
        block(torch.from_numpy(x) if framework == "torch" else paddle.to_tensor(x))
