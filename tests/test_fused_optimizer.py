"""The trainer's optimizer: PyTorch's fused kernel where it has one, the same update as a
plain AdamW / SGD written out here, and states that move between kernels."""

import copy

import pytest
import torch
from packaging.version import Version

from pml_hashing.models import HashingModel
from pml_hashing.training import ExperimentConfig
from pml_hashing.training.builders import build_optimizer, fused_supported, load_optimizer_state

CPU_FUSED = Version(torch.__version__.split("+")[0]) >= Version("2.4")


def naive_adamw(param, grads, lr, beta1, beta2, eps, weight_decay):
    """Loshchilov & Hutter's AdamW, one tensor, step by step."""
    param, m, v = param.clone(), torch.zeros_like(param), torch.zeros_like(param)
    for t, g in enumerate(grads, start=1):
        param = param * (1 - lr * weight_decay)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
        param = param - lr * m_hat / (v_hat.sqrt() + eps)
    return param


def naive_sgd(param, grads, lr, momentum, weight_decay):
    """SGD with heavy-ball momentum and L2 weight decay, as torch.optim.SGD defines it."""
    param, buffer = param.clone(), None
    for g in grads:
        g = g + weight_decay * param
        buffer = g.clone() if buffer is None else momentum * buffer + g
        param = param - lr * buffer
    return param


def step_with(params, optimizer, grads) -> None:
    """One optimizer step with ``grads`` (copies) as the parameters' gradients."""
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    optimizer.step()


def small_model(dtype, memory_format=torch.channels_last):
    """The trainer's default: convolution weights in channels-last memory format."""
    torch.manual_seed(0)
    model = HashingModel("hashing_cnn_small", 16, in_chans=1, widths=(4, 8))
    return model.to(dtype).to(memory_format=memory_format)


def test_the_fused_kernel_is_asked_of_pytorch():
    assert fused_supported(torch.optim.AdamW, "cpu") is CPU_FUSED
    assert fused_supported(torch.optim.SGD, "cpu") is CPU_FUSED
    if not torch.cuda.is_available():
        assert fused_supported(torch.optim.AdamW, "cuda") is False


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["adamw", "sgd"])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_the_built_optimizer_updates_as_the_plain_algorithm(name, dtype, memory_format):
    """With channels-last weights the (contiguous) gradients below have other strides than
    their parameters, which PyTorch's fused CPU kernel alone would update wrong."""
    config = ExperimentConfig(optimizer=name, lr=0.01)
    model = small_model(dtype, memory_format)
    optimizer = build_optimizer(config, model, torch.nn.Module(), "cpu")
    kernel = True if CPU_FUSED else None
    assert all(group.get("fused") is kernel for group in optimizer.param_groups)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    start = [p.detach().clone() for p in params]
    generator = torch.Generator().manual_seed(1)
    grads = [[torch.randn(p.shape, generator=generator, dtype=dtype) for p in params]
             for _ in range(5)]  # fmt: skip
    for step in grads:
        step_with(params, optimizer, step)
    tolerance = {"rtol": 1e-5, "atol": 1e-6}
    if dtype == torch.float64:
        tolerance = {"rtol": 1e-12, "atol": 1e-13}
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.01 and group["weight_decay"] == 1e-4
    for i, p in enumerate(params):
        history = [step[i] for step in grads]
        if name == "adamw":
            (beta1, beta2), eps = group["betas"], group["eps"]
            expected = naive_adamw(start[i], history, 0.01, beta1, beta2, eps, 1e-4)
        else:
            assert group["momentum"] == 0.9
            expected = naive_sgd(start[i], history, 0.01, 0.9, 1e-4)
        torch.testing.assert_close(p.detach(), expected, **tolerance)


@pytest.mark.skipif(not CPU_FUSED, reason="PyTorch < 2.4 has no fused CPU kernel to resume into")
def test_a_state_saved_by_the_plain_kernel_resumes_fused_with_the_same_numbers():
    config = ExperimentConfig(lr=0.01)
    plain_model, fused_model = small_model(torch.float32), small_model(torch.float32)
    groups = plain_model.parameter_groups(0.01)  # the groups build_optimizer makes
    plain = torch.optim.AdamW(groups, lr=0.01, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(2)
    plain_params, fused_params = list(plain_model.parameters()), list(fused_model.parameters())
    shapes = [p.shape for p in plain_params]
    grads = [[torch.randn(s, generator=generator) for s in shapes] for _ in range(5)]
    for g in grads[:3]:
        step_with(plain_params, plain, g)
    fused_model.load_state_dict(plain_model.state_dict())
    fused = build_optimizer(config, fused_model, torch.nn.Module(), "cpu")
    saved = copy.deepcopy(plain.state_dict())  # as read from disk: no tensor shared,
    for moments in saved["state"].values():  # and contiguous (to_tree writes them so)
        for key in ("exp_avg", "exp_avg_sq"):
            moments[key] = moments[key].contiguous()
    assert saved["param_groups"][0]["fused"] is None  # as 0.1's checkpoints hold it
    load_optimizer_state(fused, saved)
    assert all(group["fused"] is True for group in fused.param_groups)
    assert fused.state[fused_params[0]]["step"].item() == 3
    for g in grads[3:]:
        step_with(plain_params, plain, g)
        step_with(fused_params, fused, g)
    for a, b in zip(plain_params, fused_params, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # and back: a fused state loads into a plain optimizer, which stays plain
    again = torch.optim.AdamW(plain_model.parameter_groups(0.01), lr=0.01, weight_decay=1e-4)
    load_optimizer_state(again, copy.deepcopy(fused.state_dict()))
    assert again.param_groups[0]["fused"] is None
