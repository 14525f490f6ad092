"""Builders of beat files, run by ``heartlab data ...`` (see :mod:`heartlab.data_cli`).

* :mod:`~heartlab.builders.mitbih`: the Arrhythmia files from the raw MIT-BIH records (Kachuee et al. 2018);
* :mod:`~heartlab.builders.physionet`: the MIT-BIH record ids, a folder of records checked, the PhysioNet download;
* :mod:`~heartlab.builders.kaggle`: the four files from the Kaggle heartbeat CSVs;
* :mod:`~heartlab.builders.split`: a stratified train/test split of one beat file;
* :mod:`~heartlab.builders.demo`: SYNTHETIC beats for trying the tools without real data;
* :mod:`~heartlab.builders.info`: a report on one beat file;
* :mod:`~heartlab.builders.outputs`: all-or-nothing writing of a command's output files.

The submodules are imported on demand (they pull in scipy and wfdb).
"""
