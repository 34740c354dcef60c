"""What users look at: HTML cards, progress bars, live widgets and the dashboard.

Notebook-aware, never notebook-dependent: everything works in a terminal, widgets appear when a
Jupyter kernel and ipywidgets are there. Nothing here talks to the server except through a client
core (:mod:`taskq_sdk._core`), and nothing heavy (ipywidgets, IPython, tqdm's notebook bar) is
imported before it is needed:

* :mod:`.notebook` - is this a Jupyter kernel, and the optional imports with their install hint;
* :mod:`.html` - plain functions from facts to HTML (jobs, batches, clients, clusters, errors), one palette;
* :mod:`.progress` - bars that follow a wait (``job.wait(progress=True)``, ``batch.wait(progress=True)``);
* :mod:`.widgets` - live ipywidgets views of jobs and batches, with Cancel;
* :mod:`.dashboard` - ``client.dashboard()``;
* :mod:`.task_stream` - ``batch.timeline()`` in a notebook: which worker ran which row when.
"""
