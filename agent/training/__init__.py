"""PPO training: settings, environment construction, callbacks and the run itself (``disaggpilot train``)."""
