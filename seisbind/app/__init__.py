"""``seisbind app``: a local web page to search an index and look at the answers.

* :mod:`seisbind.app.backend`: the query logic, no UI (:class:`~seisbind.app.backend.AppBackend`:
  the model and index loaded once; a file, a dataset item; the joint-space map);
* :mod:`seisbind.app.figures`: the query, hits and map drawn (matplotlib, Plotly), no UI;
* :mod:`seisbind.app.page`: the Gradio page;
* :mod:`seisbind.app.cli`: the sub-command.
"""
