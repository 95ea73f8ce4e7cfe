"""Image work: safe decoding, smart crop, collage and preview rendering."""

import os

# numpy (imported lazily, by the smart crop and the comparison) loads OpenBLAS,
# which starts a spinning thread per core: ~80 ms of CPU at import, taken from the
# threads that decode covers, for matrix products we never make (our numpy work is
# elementwise). One BLAS thread unless the user says otherwise.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
