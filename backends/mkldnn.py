"""ember.backends.mkldnn: ember has no oneDNN; the switch is kept and changes nothing."""

enabled = True


def is_available() -> bool:
    return False
