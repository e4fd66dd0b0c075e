"""Write the reference files some tests compare against, made by other libraries.

    python tests/data/make_references.py      # needs torch and scipy; the tests need neither

The tests run where neither library is installed (CI installs the `test` extra
only), so what those libraries compute is stored here once, by this script:

    lrn_torch.npz             torch.nn.functional.local_response_norm of a fixed input
                              for three (size, k, alpha) and beta 0.75: tests/test_lrn.py
    savemat.mat               scipy.io.savemat of a few variables (plain and compressed):
    savemat_compressed.mat    tests/test_imagenet.py reads them with alexnet's own reader
    meta_matlab_style.mat     tests/test_imagenet.py's MATLAB-style meta.mat writer, its
                              output checked here by scipy.io.loadmat before it is stored

Run it again after changing one of those inputs; it prints what it wrote.
"""
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

# torch's LRN divides alpha by the window size: these are torch's arguments
LRN_CASES = ((5, 2.0, 1e-4), (5, 1.0, 1.0), (3, 1.0, 0.5))     # (size, k, alpha), beta 0.75
SAVEMAT_VALUES = {"a": np.arange(12.0).reshape(3, 4), "i": np.array([[7, -3]], np.int16),
                  "s": "hello", "rows": np.array(["ab", "cd"]), "b": np.array([[True, False]])}


def lrn_torch():
    import torch
    a = np.random.default_rng(1).standard_normal((2, 11, 5, 6)) * 3
    out = {"input": a, "cases": np.array(LRN_CASES)}
    for i, (size, k, alpha) in enumerate(LRN_CASES):
        out[f"output{i}"] = torch.nn.functional.local_response_norm(
            torch.from_numpy(a), size=size, alpha=alpha, beta=0.75, k=k).numpy()
    np.savez(HERE / "lrn_torch.npz", **out)
    return f"lrn_torch.npz (torch {torch.__version__})"


def savemat():
    import scipy
    import scipy.io as sio
    sio.savemat(HERE / "savemat.mat", SAVEMAT_VALUES, do_compression=False)
    sio.savemat(HERE / "savemat_compressed.mat", SAVEMAT_VALUES, do_compression=True)
    return f"savemat.mat, savemat_compressed.mat (scipy {scipy.__version__})"


def meta_matlab_style():
    import scipy.io as sio
    sys.path.insert(0, str(HERE.parent))
    from test_imagenet import SYNSETS_2010, write_mat_like_matlab
    path = HERE / "meta_matlab_style.mat"
    write_mat_like_matlab(path, SYNSETS_2010, "ILSVRC2010_ID", compress=False)
    ref = sio.loadmat(path, squeeze_me=True)["synsets"]
    assert [str(w) for w in ref["WNID"]] == [s[1] for s in SYNSETS_2010], ref
    assert [int(i) for i in ref["ILSVRC2010_ID"]] == [s[0] for s in SYNSETS_2010], ref
    return "meta_matlab_style.mat (read back by scipy.io.loadmat: the same WNIDs and IDs)"


if __name__ == "__main__":
    for make in (lrn_torch, savemat, meta_matlab_style):
        print("wrote", make())
