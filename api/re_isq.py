"""POST /re_isq {"ggml_type": "Q4K"} -> 202 + job; GET /re_isq/{job_id} -> the job's status."""
import falcon

from mistralrs.compiler.isq import UnknownIsqType, parse_isq
from mistralrs.runtime.requantize import JobConflict

from .body import STRING, read_body
from .errors import APIError, invalid_request


class ReIsq:
    """Recompilation is asynchronous: the POST answers at once; poll the job (or /v1/models) for progress.

    mistral.rs answers 200 with plain text, even to an unknown type; we answer 400 to a bad type and 409
    while another recompilation runs.
    """

    def __init__(self, requantizer):
        self.requantizer = requantizer

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        ggml_type = read_body(req).get("ggml_type", STRING)
        if ggml_type is None:
            raise invalid_request("Missing required parameter: 'ggml_type'.", "ggml_type", "missing_required_parameter")
        try:
            scheme = parse_isq(ggml_type)
        except UnknownIsqType as e:
            raise invalid_request(str(e), "ggml_type", "unsupported_isq_type") from None
        try:
            job = self.requantizer.start(scheme.name if scheme else "F32")
        except JobConflict as e:
            raise APIError(409, str(e), code="re_isq_in_progress") from None
        resp.status = falcon.HTTP_202
        resp.location = f"/re_isq/{job.id}"
        resp.media = job.to_dict()

    def on_get_job(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        job = self.requantizer.jobs.get(job_id)
        if job is None:
            raise APIError(404, f"No re_isq job `{job_id}`.", param="job_id", code="job_not_found")
        resp.media = job.to_dict()
