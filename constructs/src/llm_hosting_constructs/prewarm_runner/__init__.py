"""Lambda code of the deploy-time model pre-warm (see ``handler``); packaged as the function's asset."""
