"""Datasets: the IDX reader, in-memory and HDF5 datasets, the embedded default data.

* :func:`load_dataset` -- Fashion-MNIST (a given directory, else the installed
  copy, else the subset embedded in the package) or MNIST from a directory.
* :class:`ArrayDataset`, :class:`HDF5Dataset` -- ``len(ds)``, ``ds.num_classes``,
  ``ds.image_shape`` and ``ds.read(indices) -> (x, y)``.
* :func:`read_idx`, :func:`read_idx_pair` -- the MNIST file format, validated.
* :func:`convert_idx_to_hdf5`, :func:`write_hdf5_dataset` -- the HDF5 format.
* :func:`data_identity`, :func:`dataset_identity` -- which samples a run used (files,
  count, digest), for checkpoints and banners.
"""
from distnet.data.builtin import (  # noqa: F401
    DATASET_NAMES, FASHION_MNIST_CLASSES, MNIST_CLASSES, Splits, convert_dataset_to_hdf5,
    find_dataset, load_dataset, verify_embedded,
)
from distnet.data.datasets import ArrayDataset, Dataset, HDF5Dataset, as_dataset  # noqa: F401
from distnet.data.hdf5_format import (  # noqa: F401
    FORMAT_NAME, FORMAT_VERSION, DatasetMetadata, convert_idx_to_hdf5, read_metadata,
    write_hdf5_dataset,
)
from distnet.data.idx import (  # noqa: F401
    decode_idx, encode_idx, read_idx, read_idx_header, read_idx_pair, write_idx,
)
from distnet.data.identity import data_identity, dataset_identity, describe, same_data  # noqa: F401
from distnet.data.split import Subset, validation_split  # noqa: F401
