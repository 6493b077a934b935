"""The application: a typed builder that binds the stage deployments into one DAG.

serve run pipeline_graph:app                      # defaults + SPEAKERSCRIBE_* env
serve run pipeline_graph:build beam_size=1        # typed args, validated by Settings
serve run serve_config.cpu.yaml                   # the same builder, args from YAML
serve deploy serve_config.yaml                    # production, on a GPU cluster
"""

from ray.serve import Application

from speakerscribe.preflight import check_native_stack

# Before the deployments import torch, torchaudio and CTranslate2: a broken native stack
# stops the build with one line rather than with a traceback in every replica.
check_native_stack()

from deployments.diarizer import Diarizer  # noqa: E402 (after the native check)
from deployments.ingress import SpeechIngress  # noqa: E402
from deployments.jobs import JobRunner  # noqa: E402
from deployments.separator import VocalSeparator  # noqa: E402
from deployments.stages import StageHandles  # noqa: E402
from deployments.transcriber import Transcriber  # noqa: E402
from speakerscribe.settings import Settings, load_settings  # noqa: E402


def build(args: Settings) -> Application:
    """Settings → the ingress, bound to one ``StageHandles`` and the job runner."""
    if not isinstance(args, Settings):  # a plain dict, e.g. from an older Serve
        args = load_settings(**dict(args or {}))
    # @serve.deployment makes each class a Deployment; mypy keeps a decorated class's own type
    # a model stage gets its own section; the ingress and the runners all settings, less
    # the secrets they do not use
    handles = StageHandles(
        separator=VocalSeparator.bind(args.separator),  # type: ignore[attr-defined]
        transcriber=Transcriber.options(  # type: ignore[attr-defined]
            user_config={
                "max_batch_size": args.max_batch_size,
                "batch_wait_timeout_s": args.batch_wait_timeout_s,
            }
        ).bind(args.transcriber),
        diarizer=Diarizer.bind(args.diarizer),  # type: ignore[attr-defined]
    )
    job_runner = JobRunner.bind(args.for_stage("job_runner"), handles)  # type: ignore[attr-defined]
    return SpeechIngress.bind(args.for_stage("ingress"), handles, job_runner)  # type: ignore[attr-defined]


app = build(load_settings())
