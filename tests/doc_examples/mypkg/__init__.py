"""The ``mypkg`` that docstring examples name (``mypkg.jobs``); see tests/test_docstring_examples.py."""
