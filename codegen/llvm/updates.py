"""LLVM IR for optimizer updates: one pass over a parameter's arrays per step.

numpy runs Adam's eager update as about ten whole-array passes with temporaries (~50 us for a
small parameter, mostly per-call cost); here it is one loop that reads each element of the
parameter, its gradient and its moments once and writes them back. The operations, their
order and their float rounding are exactly those of optim/adam.py's and optim/sgd.py's numpy
paths (no fused multiply-adds, no reassociation: LLVM keeps IEEE semantics without fast-math
flags, and sqrt and division are correctly rounded in both), so the results are bit for bit
theirs.

Each function is a task of the native pool (codegen/llvm/pool.py) over element ranges:

    void task(i64 *argv, i64 start, i64 end)

argv holds the arrays' pointers, then the scalars as the bits of float64 values, each
rounded to the arrays' dtype in the kernel as numpy's dtype.type(x) rounds it.
"""

from __future__ import annotations

from .windows import IR_TYPES, task_header


def _task(name: str, arrays: list[str], scalars: list[str], ty: str, body: list[str]) -> str:
    """A pool task over elements [start, end) (windows.task_header: argv's arrays and scalars
    passed to a noalias body) whose body loads every array's element i as %<name>, runs
    `body` (which sets %<name>.new for each array it writes) and stores those back."""
    lines = task_header(name, [(f"{a}.ptr", "ptr") for a in arrays]
                        + [(f"{s}.bits", "i64") for s in scalars])
    for s in scalars:
        lines.append(f"  %{s}.d = bitcast i64 %{s}.bits to double")
        if ty == "float":
            lines.append(f"  %{s} = fptrunc double %{s}.d to float")
        else:
            lines.append(f"  %{s} = fadd double %{s}.d, -0.0")  # the value itself
    lines += [
        "  %none = icmp sge i64 %start, %end",
        "  br i1 %none, label %exit, label %loop",
        "loop:",
        "  %i = phi i64 [ %start, %entry ], [ %i1, %loop ]",
    ]
    for a in arrays:
        lines.append(f"  %{a}.at = getelementptr {ty}, ptr %{a}.ptr, i64 %i")
        lines.append(f"  %{a} = load {ty}, ptr %{a}.at")
    lines += [f"  {line}" for line in body]
    for a in arrays:
        if any(line.startswith(f"%{a}.new ") for line in body):
            lines.append(f"  store {ty} %{a}.new, ptr %{a}.at")
    lines += [
        "  %i1 = add i64 %i, 1",
        "  %more = icmp slt i64 %i1, %end",
        "  br i1 %more, label %loop, label %exit",
        "exit:",
        "  ret void",
        "}",
        f"declare {ty} @llvm.sqrt.{'f32' if ty == 'float' else 'f64'}({ty})",
    ]
    return "\n".join(lines) + "\n"


def adam_name(dtype: str, decay: str, amsgrad: bool) -> str:
    return f"ember_adam_{dtype}_{decay}{'_amsgrad' if amsgrad else ''}"


def adam_ir(dtype: str, decay: str, amsgrad: bool) -> str:
    """Adam's (and AdamW's) step on one parameter. decay: "none", "coupled" (g += p * wd) or
    "decoupled" (p *= 1 - lr * wd). Arrays: p, g, m, v (and the running maximum of v with
    amsgrad). Scalars: decay, 1 - beta1, beta2, 1 - beta2, sqrt of bias correction 2, eps,
    -step_size."""
    ty = IR_TYPES[dtype]
    sqrt = f"@llvm.sqrt.{'f32' if ty == 'float' else 'f64'}"
    body = []
    p, g = "%p", "%g"
    if decay == "decoupled":
        body.append(f"%p.decayed = fmul {ty} %p, %decay")
        p = "%p.decayed"
    elif decay == "coupled":
        body += [f"%g.wd = fmul {ty} %p, %decay", f"%g.decayed = fadd {ty} %g, %g.wd"]
        g = "%g.decayed"
    body += [
        # m += (1 - beta1) * (g - m)
        f"%m.diff = fsub {ty} {g}, %m",
        f"%m.step = fmul {ty} %one_m_b1, %m.diff",
        f"%m.new = fadd {ty} %m, %m.step",
        # v *= beta2; v += (g * (1 - beta2)) * g
        f"%v.scaled = fmul {ty} %v, %b2",
        f"%v.g = fmul {ty} {g}, %one_m_b2",
        f"%v.gg = fmul {ty} %v.g, {g}",
        f"%v.new = fadd {ty} %v.scaled, %v.gg",
    ]
    second = "%v.new"
    if amsgrad:  # np.maximum(peak, v): peak where peak >= v or peak is NaN, else v
        body += [
            f"%k.ge = fcmp oge {ty} %k, %v.new",
            f"%k.nan = fcmp uno {ty} %k, %k",
            "%k.keep = or i1 %k.ge, %k.nan",
            f"%k.new = select i1 %k.keep, {ty} %k, {ty} %v.new",
        ]
        second = "%k.new"
    body += [
        f"%root = call {ty} {sqrt}({ty} {second})",
        f"%scaled = fdiv {ty} %root, %bc2",
        f"%denom = fadd {ty} %scaled, %eps",
        f"%num = fmul {ty} %m.new, %neg_step",
        f"%upd = fdiv {ty} %num, %denom",
        f"%p.new = fadd {ty} {p}, %upd",
    ]
    arrays = ["p", "g", "m", "v"] + (["k"] if amsgrad else [])
    scalars = ["decay", "one_m_b1", "b2", "one_m_b2", "bc2", "eps", "neg_step"]
    return _task(adam_name(dtype, decay, amsgrad), arrays, scalars, ty, body)


def sgd_name(dtype: str, decay: bool, dampened: bool, nesterov: bool,
             momentum: bool = True) -> str:
    if not momentum:
        return f"ember_sgd_{dtype}{'_wd' if decay else ''}_plain"
    return (f"ember_sgd_{dtype}{'_wd' if decay else ''}{'_damp' if dampened else ''}"
            f"{'_nesterov' if nesterov else ''}")


def sgd_ir(dtype: str, decay: bool, dampened: bool, nesterov: bool,
           momentum: bool = True) -> str:
    """SGD on one parameter: with momentum, on a buffer that exists (arrays p, g, b; scalars
    weight decay, momentum, 1 - dampening, -lr), or without (arrays p, g; scalars weight
    decay, -lr)."""
    ty = IR_TYPES[dtype]
    body = []
    g = "%g"
    if decay:
        body += [f"%g.wd = fmul {ty} %p, %wd", f"%g.decayed = fadd {ty} %g, %g.wd"]
        g = "%g.decayed"
    step = g
    if momentum:
        body.append(f"%b.scaled = fmul {ty} %b, %momentum")
        added = g
        if dampened:
            body.append(f"%g.damped = fmul {ty} {g}, %one_m_damp")
            added = "%g.damped"
        body.append(f"%b.new = fadd {ty} %b.scaled, {added}")
        step = "%b.new"
        if nesterov:
            body += [f"%b.m = fmul {ty} %b.new, %momentum", f"%g.nest = fadd {ty} {g}, %b.m"]
            step = "%g.nest"
    body += [f"%upd = fmul {ty} {step}, %neg_lr", f"%p.new = fadd {ty} %p, %upd"]
    name = sgd_name(dtype, decay, dampened, nesterov, momentum)
    if not momentum:
        return _task(name, ["p", "g"], ["wd", "neg_lr"], ty, body)
    return _task(name, ["p", "g", "b"], ["wd", "momentum", "one_m_damp", "neg_lr"], ty, body)
