"""Multi-label annotations from a CSV beside an image folder, in the two layouts public
chest X-ray sets use:

- a file column and one column of `|`-separated findings (NIH ChestX-ray14's
  `Image Index,Finding Labels`: `Effusion|Infiltration`; `No Finding` means none), or
- a file column and one 0/1 column per class (CheXpert-style; `-1`, uncertain, is read as
  `uncertain`: 0 by default (U-Zeros), or 1 (U-Ones); a blank cell is 0).

The file column is the first one; paths are relative to the image folder.
"""

import csv
import os

import numpy as np

NEGATIVE_LABEL = "No Finding"


def _is_binary_columns(rows, columns):
    allowed = {"", "0", "1", "-1", "0.0", "1.0", "-1.0"}
    return len(columns) > 1 and all(row[c].strip() in allowed for row in rows for c in columns)


def read_multilabel_csv(path, folder, uncertain=0, negative_label=NEGATIVE_LABEL, separator="|"):
    """Files and multi-hot labels from an annotation CSV.

    Args:
        path: the CSV (header row first).
        folder: the image folder the CSV's file paths are relative to.
        uncertain: the label a `-1` cell becomes (0 or 1).
        negative_label: the finding that means "none" in the findings-column layout.
        separator: between findings in the findings-column layout.

    Returns:
        dict: `files` (paths of the rows whose file exists), `labels` (`(N, C)` int8),
        `class_names` (sorted findings, or the class columns in CSV order), `missing` (rows'
        file names not found in `folder`).

    Examples:
        >>> import tempfile, os
        >>> tmp = tempfile.TemporaryDirectory()
        >>> for name in ("a.png", "b.png"):
        ...     open(os.path.join(tmp.name, name), "wb").close()
        >>> with open(os.path.join(tmp.name, "labels.csv"), "w") as f:
        ...     _ = f.write("Image Index,Finding Labels\\na.png,Effusion|Mass\\nb.png,No Finding\\nc.png,Mass\\n")
        >>> out = read_multilabel_csv(os.path.join(tmp.name, "labels.csv"), tmp.name)
        >>> out["class_names"], out["labels"].tolist(), out["missing"]
        (['Effusion', 'Mass'], [[1, 1], [0, 0]], ['c.png'])
        >>> tmp.cleanup()
    """
    if uncertain not in (0, 1):
        raise ValueError(f"`uncertain` must be 0 or 1, got {uncertain!r}.")
    if not os.path.isdir(folder):
        raise ValueError(f"`folder` {os.fspath(folder)!r} is not a folder.")
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows, header = list(reader), reader.fieldnames or []
    except OSError as error:
        raise ValueError(f"`path` {os.fspath(path)!r} cannot be read: {error.strerror or error}") from error
    if len(header) < 2 or not rows:
        raise ValueError(f"`path` {os.fspath(path)!r} must have a header (a file column, then labels) and rows; "
                         f"got columns {header} and {len(rows)} rows.")
    file_column, label_columns = header[0], header[1:]
    if _is_binary_columns(rows, label_columns):
        class_names = list(label_columns)

        def row_labels(row):
            values = [row[c].strip() for c in label_columns]
            return [1 if v in ("1", "1.0") else uncertain if v in ("-1", "-1.0") else 0 for v in values]
    elif len(label_columns) == 1:
        column = label_columns[0]
        findings = [[x.strip() for x in row[column].split(separator) if x.strip()] for row in rows]
        class_names = sorted({x for found in findings for x in found} - {negative_label})
        index = {name: i for i, name in enumerate(class_names)}

        def row_labels(row):
            hot = [0] * len(class_names)
            for x in row[column].split(separator):
                if x.strip() and x.strip() != negative_label:
                    hot[index[x.strip()]] = 1
            return hot
    else:
        raise ValueError(
            f"`path` {os.fspath(path)!r}: expected either one findings column ({separator!r}-separated) or 0/1 "
            f"class columns (-1 uncertain, blank 0) after the file column; got columns {label_columns}."
        )
    if not class_names:
        raise ValueError(f"`path` {os.fspath(path)!r} names no class.")
    files, labels, missing = [], [], []
    for row in rows:
        name = row[file_column].strip()
        full = os.path.join(folder, name)
        if os.path.isfile(full):
            files.append(full)
            labels.append(row_labels(row))
        else:
            missing.append(name)
    return {"files": files, "labels": np.asarray(labels, dtype="int8").reshape(-1, len(class_names)),
            "class_names": class_names, "missing": missing}
