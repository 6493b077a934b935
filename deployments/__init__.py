"""Ray Serve deployments: one stage each, thin wrappers around ``speakerscribe``."""
