"""A protocol's prerequisite that is not here: the claim becomes `not run`, never a fabricated number."""


class PrerequisiteMissing(RuntimeError):
    """Something a protocol needs is absent (model weights, a source script, source material).

    `not_run = True` is what the harness looks for; the message names what is missing.
    """

    not_run = True
