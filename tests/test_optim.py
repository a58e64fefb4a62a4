"""The fit's optimizers: torch's SGD and AdamW, stepped as torch steps them outside
torch.compile, without the 1.3 s import of torch._dynamo their wrappers make."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from alphaprune.fitspec import Optimizer
from alphaprune.optim import SGD, AdamW, make_optimizer, train_also

SETTINGS = {
    SGD: (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
    AdamW: (torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.05}),
}


def _train(optimizer_class, settings, steps=4, reload_at=2) -> tuple[list, dict]:
    """A small net trained `steps` steps (a second group joining half-way, the optimizer rebuilt
    from its state_dict at `reload_at`): its parameters and the optimizer's last state."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    opt = optimizer_class(net[0].parameters(), **settings)
    for i in range(steps):
        if i == 1:
            opt.add_param_group({"params": list(net[2].parameters())})
        if i == reload_at:
            state = opt.state_dict()
            groups = [{"params": list(net[0].parameters())}, {"params": list(net[2].parameters())}]
            opt = optimizer_class(groups, **settings)
            opt.load_state_dict(state)
        x = torch.randn(8, 6, generator=torch.Generator().manual_seed(i))
        nn.functional.cross_entropy(net(x), torch.arange(8) % 3).backward()
        opt.step()
        opt.zero_grad()
    return [p.detach().clone() for p in net.parameters()], opt.state_dict()


@pytest.mark.parametrize("ours", [SGD, AdamW], ids=["sgd", "adamw"])
def test_the_optimizers_step_bitwise_as_torchs(ours):
    """The same code on the same tensors: parameters and state equal bit for bit, through a
    group added mid-run and a state_dict round trip."""
    theirs, settings = SETTINGS[ours]
    assert issubclass(ours, theirs)
    (p_ours, s_ours), (p_theirs, s_theirs) = _train(ours, settings), _train(theirs, settings)
    assert all(torch.equal(a, b) for a, b in zip(p_ours, p_theirs, strict=True))
    assert s_ours["param_groups"] == s_theirs["param_groups"]
    for i, state in s_theirs["state"].items():
        assert state.keys() == s_ours["state"][i].keys()
        assert all(torch.equal(s_ours["state"][i][k], v) for k, v in state.items())


def test_a_step_leaves_gradient_mode_as_it_was():
    net = nn.Linear(3, 2)
    opt = make_optimizer(list(net.parameters()), Optimizer(name="sgd", lr=0.1, momentum=0.9))
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    assert torch.is_grad_enabled()
    with torch.no_grad():
        opt.step()
        assert not torch.is_grad_enabled()
    train_also(opt, [nn.Parameter(torch.zeros(2))])
    assert len(opt.param_groups) == 2


def test_step_hooks_still_run():
    """torch hooks the subclass's own step (profiler and step hooks), as it hooks SGD's."""
    net, seen = nn.Linear(3, 2), []
    opt = make_optimizer(list(net.parameters()), Optimizer(name="sgd", lr=0.1))
    opt.register_step_pre_hook(lambda *_: seen.append("pre"))
    opt.register_step_post_hook(lambda *_: seen.append("post"))
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    assert seen == ["pre", "post"]


def test_building_and_stepping_the_optimizers_imports_no_torch_dynamo():
    """A process that builds, steps, saves and reloads both optimizers never imports
    torch._dynamo (torch 2.14.1: 1.3 s of CPU, in every training job of the pipeline)."""
    code = (
        "import sys, torch\n"
        "from torch import nn\n"
        "from alphaprune.fitspec import Optimizer\n"
        "from alphaprune.optim import make_optimizer, train_also\n"
        "for name in ('sgd', 'adamw'):\n"
        "    net = nn.Linear(3, 2)\n"
        "    opt = make_optimizer(list(net.parameters()), Optimizer(name=name, lr=0.1))\n"
        "    net(torch.ones(1, 3)).sum().backward()\n"
        "    opt.step(); opt.zero_grad(); opt.load_state_dict(opt.state_dict())\n"
        "    train_also(opt, [nn.Parameter(torch.zeros(2))])\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
