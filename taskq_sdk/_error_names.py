"""The public errors' names: ``taskq_sdk.errors.__all__`` and the package's exports, listed once.

A module of its own so that ``import taskq_sdk`` can export them without importing the errors
(which import ``concurrent.futures`` for ``JobCancelled``'s base class)::

    from taskq_sdk._error_names import ERROR_NAMES   # ('BlockedDestination', ...)
"""

ERROR_NAMES = (
    "BadArguments",
    "BlockedDestination",
    "BrokerUnavailable",
    "ClientClosed",
    "ConfigurationError",
    "DeserializationError",
    "DownloadFailed",
    "DownloadTimeout",
    "DownloadTooLarge",
    "DurabilityUnconfirmed",
    "InvalidName",
    "InvalidURL",
    "JobCancelled",
    "JobFailed",
    "JobLost",
    "JobNotFound",
    "JobTimedOut",
    "JobTimeout",
    "NotAVideo",
    "PayloadTooLarge",
    "PermissionDenied",
    "ResultExpired",
    "SerializationError",
    "ServerError",
    "SubmitError",
    "TaskqError",
    "UnknownJob",
    "UnsupportedScheme",
    "VideoError",
    "VideoTooLarge",
    "WaitTimeout",
)
