"""The built-in jobs every taskq worker serves.

Each job lives in its own module and imports its heavy libraries only when it runs, so importing
a job module (as the worker does at start-up) stays cheap::

    from taskq_sdk.jobs.video import VideoResult, process_video_async
"""
