"""Helpers shared by the tests (no test module imports another test module):

- ``run``: paths (REPO, DATA_DIR, FID_WEIGHTS), the tiny-run overrides, ``run_cli``/``run_module``, waiting for a state;
- ``config``: composing the real config (``compose_train``), ``only_core_callbacks``;
- ``callbacks``: test-only Lightning callbacks, instantiated by the real entry point through
  ``+callbacks.<name>._target_=tests.helpers.callbacks.<Class>``;
- ``oracles``: exact predictors and sample moments for the sampler tests.
"""
