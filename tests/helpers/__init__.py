"""Helpers shared by the tests (no test module imports another test module):

- ``run``: paths (REPO, DATA_DIR, FID_WEIGHTS), the tiny-run overrides, ``run_cli``/``run_module``/``popen`` (warm
  launches through ``zygote`` and ``zygote_client``, or cold ones), waiting for a state;
- ``probe``: a module that prints what its launch is made of (tests/test_zygote.py: warm == cold);
- ``config``: composing the real config (``compose_train``), ``only_core_callbacks``;
- ``callbacks``: test-only Lightning callbacks, instantiated by the real entry point through
  ``+callbacks.<name>._target_=tests.helpers.callbacks.<Class>``;
- ``oracles``: exact predictors and sample moments for the sampler tests.
"""
