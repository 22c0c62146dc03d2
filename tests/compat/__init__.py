"""The compatibility suite: every public masknn op through every PyTorch capability.

One table (:mod:`tests.compat.table`, rows in ``rows_*.py``) holds a row for every public
Module of :mod:`masknn.nn` and every public function of :mod:`masknn.functional`
(``tests/compat/test_table.py`` fails when a public name has none). Each capability is one
test module, and each (row, capability) pair one test, so a cell is a test id:

========================  =====================================================  ============
capability                what the cell checks                                   run it with
========================  =====================================================  ============
``compile``               ``torch.compile(dynamic=True, fullgraph=True)`` on     ``-m compile``
                          two sizes and another batch size equals eager
                          (outputs, masks, input/parameter gradients, buffers);
                          a new mask of the same shape compiles nothing new
``export``                ``torch.export`` (non-strict unless the row says       ``-m export``
                          strict), saved and loaded, rerun on another mask and
                          data equals eager
``onnx``                  ``torch.onnx.export(dynamo=True)`` run by onnxruntime  ``-m onnx``
                          on another mask and data equals eager (eval mode)
``vmap``                  ``torch.func.vmap`` and per-sample gradients           ``-m vmap``
                          (``vmap(grad(functional_call))``) equal a Python loop
``gradgrad``              ``torch.autograd.gradgradcheck`` in float64            ``-m gradgrad``
``autocast``              output dtypes under ``torch.autocast('cpu',            ``-m autocast``
                          dtype=torch.bfloat16)`` equal the plain twin's
``channels_last``         channels_last input gives channels_last output where   ``-m channels_last``
                          the plain twin keeps it, with the same values
========================  =====================================================  ============

A cell is *n/a* only where PyTorch's own twin cannot do the same: the row names the
reason and an expected error, and the cell's test then runs the twin through the same
check and passes only if the twin fails that way (so an n/a cannot go stale).
``-m compat`` selects the whole suite; ``-k PartialConv2d`` one row.
``pytest tests/compat --compat-table docs/guide/compatibility.md`` regenerates the
human-readable table of results, also under pytest-xdist (``-n 2``): the hooks that record
the cells and write the table live in ``tests/conftest.py``, which the xdist controller loads.
"""
