"""The application: a typed builder that binds the stage deployments into one DAG.

    serve run pipeline_graph:app                      # defaults + SPEAKERSCRIBE_* env
    serve run pipeline_graph:build beam_size=1        # typed args, validated by Settings
    serve run serve_config.cpu.yaml                   # the same builder, args from YAML
    serve deploy serve_config.yaml                    # production, on a GPU cluster
"""

from ray.serve import Application

from deployments.diarizer import Diarizer
from deployments.ingress import SpeechIngress
from deployments.jobs import JobRunner
from deployments.separator import VocalSeparator
from deployments.transcriber import Transcriber
from speakerscribe.settings import Settings, load_settings


def build(args: Settings) -> Application:
    """Settings → ingress bound to separator, transcriber, diarizer and job runner handles."""
    if not isinstance(args, Settings):  # a plain dict, e.g. from an older Serve
        args = load_settings(**dict(args or {}))
    transcriber = Transcriber.options(
        user_config={
            "max_batch_size": args.max_batch_size,
            "batch_wait_timeout_s": args.batch_wait_timeout_s,
        }
    ).bind(args)
    separator, diarizer = VocalSeparator.bind(args), Diarizer.bind(args)
    job_runner = JobRunner.bind(args, separator, transcriber, diarizer)
    return SpeechIngress.bind(args, separator, transcriber, diarizer, job_runner)


app = build(load_settings())
