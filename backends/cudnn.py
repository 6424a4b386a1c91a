"""ember.backends.cudnn: ember has no cuDNN; the switches are kept and change nothing."""

enabled = True
benchmark = False
deterministic = False
allow_tf32 = True


def is_available() -> bool:
    return False


def version():
    return None
