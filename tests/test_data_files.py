"""File-based protocols from small files written in the official formats in tmp_path."""

import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pml_hashing.data import load_protocol, read_image_list

# ---------------------------------------------------------------- CIFAR-10 (python batches)

BATCH_SIZE = 60  # 6 per class in each of the 6 batches: 36 per class pooled


def write_cifar(folder, seed=0, labels_fn=None):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        labels = rng.permutation(np.repeat(np.arange(10), BATCH_SIZE // 10)).tolist()
        if labels_fn is not None:
            labels = labels_fn(name, labels)
        batch = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": rng.integers(0, 256, size=(BATCH_SIZE, 3072), dtype=np.uint8),
            b"filenames": [f"{name}_{i}.png".encode() for i in range(BATCH_SIZE)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    return folder.parent


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    return write_cifar(tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py")


def official_rows(root):
    """All rows and labels in file order, read back with plain pickle."""
    rows, labels = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(root / "cifar-10-batches-py" / name, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        rows.extend(batch[b"data"])
        labels.extend(batch[b"labels"])
    return rows, labels


def ids(dataset):
    return {int(i) for i in dataset.indices}


def per_class_counts(dataset):
    counts = {}
    for i in range(len(dataset)):
        label = int(dataset.labels[i])
        counts[label] = counts.get(label, 0) + 1
    return counts


SMALL = {"query_per_class": 2, "train_per_class": 5}


def test_cifar10_1_sizes_and_queries_disjoint_from_database(cifar_root):
    protocol = load_protocol("cifar10-1", root=cifar_root, **SMALL)
    query, database, train = ids(protocol.query), ids(protocol.database), ids(protocol.train)
    assert len(query) == 20 and len(database) == 340 and len(train) == 50
    assert not query & database
    assert query | database == set(range(360))
    assert train <= database
    assert per_class_counts(protocol.query) == {c: 2 for c in range(10)}
    assert per_class_counts(protocol.train) == {c: 5 for c in range(10)}
    assert protocol.topk is None and protocol.num_classes == 10 and protocol.in_chans == 3
    assert protocol.validation is None


def test_cifar10_1_default_sizes_need_100_queries_per_class(cifar_root):
    # 36 images per class cannot give 100 queries + 500 training images per class.
    with pytest.raises(ValueError, match="class 0 has 36 items"):
        load_protocol("cifar10-1", root=cifar_root)


def test_cifar10_1_train_per_class_larger_than_available_is_rejected(cifar_root):
    with pytest.raises(ValueError, match="train_per_class=40 but class 0 has only 34"):
        load_protocol("cifar10-1", root=cifar_root, query_per_class=2, train_per_class=40)


def test_cifar10_2_test_batch_is_queries_and_training_batches_are_database(cifar_root):
    protocol = load_protocol("cifar10-2", root=cifar_root)
    assert ids(protocol.query) == set(range(300, 360))
    assert ids(protocol.database) == set(range(300))
    assert ids(protocol.train) == set(range(300))


def test_cifar10_2_rejects_query_per_class(cifar_root):
    with pytest.raises(ValueError, match="query_per_class applies to cifar10-1 only"):
        load_protocol("cifar10-2", root=cifar_root, query_per_class=2)


@pytest.mark.parametrize("name", ["cifar10-1", "cifar10-2"])
def test_cifar10_validation_held_out_of_training(cifar_root, name):
    kwargs = SMALL if name == "cifar10-1" else {}
    protocol = load_protocol(name, root=cifar_root, validation_per_class=3, **kwargs)
    validation, train = ids(protocol.validation), ids(protocol.train)
    assert per_class_counts(protocol.validation) == {c: 3 for c in range(10)}
    assert not validation & train
    assert not validation & ids(protocol.query)
    assert validation <= ids(protocol.database)


def test_cifar10_labels_match_the_batches(cifar_root):
    _, labels = official_rows(cifar_root)
    protocol = load_protocol("cifar10-1", root=cifar_root, **SMALL)
    for dataset in (protocol.query, protocol.train):
        for i, source in enumerate(dataset.indices):
            assert int(dataset.labels[i]) == labels[source]


def test_cifar10_images_follow_the_official_row_layout(cifar_root):
    rows, labels = official_rows(cifar_root)
    protocol = load_protocol("cifar10-2", root=cifar_root, transform=np.asarray)
    for i in (0, 7, 59):
        image, label = protocol.query[i]
        row = rows[300 + i]
        expected = np.zeros((32, 32, 3), dtype=np.uint8)
        for y in range(32):
            for x in range(32):
                for c in range(3):
                    expected[y, x, c] = row[c * 1024 + y * 32 + x]
        assert np.array_equal(image, expected)
        assert int(label) == labels[300 + i]


def test_cifar10_default_transform_gives_normalized_float_tensors(cifar_root):
    protocol = load_protocol("cifar10-1", root=cifar_root, image_size=48, **SMALL)
    image, label = protocol.train[3]
    assert image.shape == (3, 48, 48) and image.dtype == torch.float32
    assert label.dtype == torch.int64 and label.ndim == 0
    assert protocol.image_size == (48, 48)
    # ImageNet normalization maps [0, 1] pixels into about [-2.2, 2.7], not [0, 1].
    assert float(image.min()) < 0.0


def test_cifar10_custom_transform_sets_image_size(cifar_root):
    protocol = load_protocol(
        "cifar10-1", root=cifar_root, transform=lambda im: torch.zeros(3, 20, 24), **SMALL
    )
    assert protocol.image_size == (20, 24)


def test_cifar10_split_is_deterministic_per_seed_and_differs_across_seeds(cifar_root):
    a = load_protocol("cifar10-1", root=cifar_root, seed=1, **SMALL).split_indices()
    b = load_protocol("cifar10-1", root=cifar_root, seed=1, **SMALL).split_indices()
    c = load_protocol("cifar10-1", root=cifar_root, seed=2, **SMALL).split_indices()
    assert a == b
    assert a["query"] != c["query"] and a["train"] != c["train"]


def test_cifar10_root_may_be_the_batches_folder_itself(cifar_root):
    inside = load_protocol("cifar10-1", root=cifar_root / "cifar-10-batches-py", **SMALL)
    outside = load_protocol("cifar10-1", root=cifar_root, **SMALL)
    assert inside.split_indices() == outside.split_indices()


def test_cifar10_missing_data_names_the_expected_file(tmp_path):
    expected = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    with pytest.raises(FileNotFoundError, match=f"{expected} does not exist.*test_batch"):
        load_protocol("cifar10-1", root=tmp_path)


def test_cifar10_missing_test_batch_names_it(tmp_path):
    root = write_cifar(tmp_path / "cifar-10-batches-py")
    (root / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(FileNotFoundError, match=str(root / "cifar-10-batches-py" / "test_batch")):
        load_protocol("cifar10-2", root=root)


def test_cifar10_without_root_says_root_is_required():
    with pytest.raises(ValueError, match="root is required for CIFAR-10"):
        load_protocol("cifar10-1")


def test_cifar10_label_out_of_range_is_rejected(tmp_path):
    def bad(name, labels):
        return [12 if (name == "data_batch_3" and i == 4) else v for i, v in enumerate(labels)]

    root = write_cifar(tmp_path / "cifar-10-batches-py", labels_fn=bad)
    with pytest.raises(ValueError, match=r"data_batch_3: labels must be in .*\[0, 10\); got 12"):
        load_protocol("cifar10-1", root=root, **SMALL)


def test_cifar10_saved_split_round_trip(cifar_root, tmp_path):
    first = load_protocol("cifar10-1", root=cifar_root, seed=5, validation_per_class=1, **SMALL)
    path = first.save_splits(tmp_path / "run" / "splits.json")
    again = load_protocol(
        "cifar10-1", root=cifar_root, split_file=path, validation_per_class=1, **SMALL
    )
    assert again.seed == 5
    assert again.split_indices() == first.split_indices()
    image_a, label_a = first.query[4]
    image_b, label_b = again.query[4]
    assert torch.equal(image_a, image_b) and int(label_a) == int(label_b)


def test_cifar10_saved_split_must_match_name_and_sizes(cifar_root, tmp_path):
    path = load_protocol("cifar10-1", root=cifar_root, **SMALL).save_splits(tmp_path / "s.json")
    with pytest.raises(ValueError, match="holds a split of 'cifar10-1'; expected 'cifar10-2'"):
        load_protocol("cifar10-2", root=cifar_root, split_file=path)
    with pytest.raises(ValueError, match="split 'query' must have 30 items .* got 20"):
        load_protocol(
            "cifar10-1", root=cifar_root, split_file=path, query_per_class=3, train_per_class=5
        )


# ------------------------------------------------------------ HashNet-style list files


def write_images(folder, count, seed=0):
    """Tiny images with distinct pixels, alternately PNG and JPEG, one grayscale."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        name = f"img_{i:04d}.{'png' if i % 2 == 0 else 'jpg'}"
        pixels = rng.integers(0, 256, size=(6, 5, 3), dtype=np.uint8)
        image = Image.fromarray(pixels[:, :, 0], mode="L") if i == 1 else Image.fromarray(pixels)
        image.save(folder / name)
        names.append(f"images/{name}")
    return names


def write_list(path, names, labels):
    lines = [
        name + " " + " ".join(str(int(v)) for v in row)
        for name, row in zip(names, labels, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def random_multi_hot(rng, count, num_classes):
    labels = (rng.random((count, num_classes)) < 0.15).astype(int)
    labels[np.arange(count), rng.integers(0, num_classes, count)] = 1
    return labels


def one_hot(classes, num_classes):
    labels = np.zeros((len(classes), num_classes), dtype=int)
    labels[np.arange(len(classes)), classes] = 1
    return labels


def parse_plainly(path):
    names, rows = [], []
    for line in path.read_text().splitlines():
        if line.strip():
            parts = line.split()
            names.append(parts[0])
            rows.append([int(v) for v in parts[1:]])
    return names, rows


@pytest.fixture(scope="module")
def nuswide_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("nuswide")
    names = write_images(root / "images", 60)
    labels = random_multi_hot(np.random.default_rng(1), 60, 21)
    write_list(root / "nuswide-21.txt", names, labels)
    return root


@pytest.fixture(scope="module")
def imagenet_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet")
    names = write_images(root / "images", 400)
    classes = np.random.default_rng(2).permutation(np.repeat(np.arange(100), 4))
    write_list(root / "imagenet-100.txt", names, one_hot(classes, 100))
    return root


NUS_SMALL = {"query_size": 6, "train_size": 20}
IMAGENET_SMALL = {"query_per_class": 1, "train_per_class": 2}


def test_nuswide_single_list_split_sizes(nuswide_root):
    protocol = load_protocol("nuswide-21", root=nuswide_root, **NUS_SMALL)
    query, database, train = ids(protocol.query), ids(protocol.database), ids(protocol.train)
    assert len(query) == 6 and len(database) == 54 and len(train) == 20
    assert not query & database and query | database == set(range(60))
    assert train <= database
    assert protocol.multi_label and protocol.topk == 5000 and protocol.num_classes == 21


def test_nuswide_labels_are_multi_hot_rows_of_the_list(nuswide_root):
    _, rows = parse_plainly(nuswide_root / "nuswide-21.txt")
    protocol = load_protocol("nuswide-21", root=nuswide_root, image_size=8, **NUS_SMALL)
    assert protocol.database.labels.shape == (54, 21)
    assert protocol.database.labels.dtype == torch.int64
    for i, source in enumerate(protocol.query.indices):
        image, label = protocol.query[i]
        assert label.tolist() == rows[source]
        assert image.shape == (3, 8, 8) and image.dtype == torch.float32


def test_nuswide_validation_size_held_out_of_training(nuswide_root):
    protocol = load_protocol("nuswide-21", root=nuswide_root, validation_size=5, **NUS_SMALL)
    validation = ids(protocol.validation)
    assert len(validation) == 5
    assert not validation & ids(protocol.train) and not validation & ids(protocol.query)


def test_nuswide_rejects_per_class_sizes(nuswide_root):
    with pytest.raises(ValueError, match="query_per_class does not apply to nuswide-21"):
        load_protocol("nuswide-21", root=nuswide_root, query_per_class=2)


def test_list_split_deterministic_per_seed_and_differs_across_seeds(nuswide_root):
    a = load_protocol("nuswide-21", root=nuswide_root, seed=3, **NUS_SMALL).split_indices()
    b = load_protocol("nuswide-21", root=nuswide_root, seed=3, **NUS_SMALL).split_indices()
    c = load_protocol("nuswide-21", root=nuswide_root, seed=4, **NUS_SMALL).split_indices()
    assert a == b and a["query"] != c["query"]


def test_list_images_load_as_rgb_pixels_of_the_file(nuswide_root):
    protocol = load_protocol("nuswide-21", root=nuswide_root, transform=np.asarray, **NUS_SMALL)
    for dataset in (protocol.query, protocol.database):
        for i in range(len(dataset)):
            path = dataset.path(i)
            with Image.open(path) as file_image:
                expected = np.asarray(file_image.convert("RGB"))
            image, _ = dataset[i]
            assert image.shape == (6, 5, 3) and image.dtype == np.uint8
            assert np.array_equal(image, expected)


def test_imagenet_single_list_per_class_split_with_integer_labels(imagenet_root):
    protocol = load_protocol("imagenet-100", root=imagenet_root, **IMAGENET_SMALL)
    assert per_class_counts(protocol.query) == {c: 1 for c in range(100)}
    assert per_class_counts(protocol.train) == {c: 2 for c in range(100)}
    assert len(protocol.database) == 300
    assert ids(protocol.train) <= ids(protocol.database)
    assert not ids(protocol.query) & ids(protocol.database)
    _, rows = parse_plainly(imagenet_root / "imagenet-100.txt")
    labels = protocol.database.labels
    assert labels.shape == (300,) and labels.dtype == torch.int64
    for i, source in enumerate(protocol.database.indices):
        assert rows[source][int(labels[i])] == 1
    assert not protocol.multi_label and protocol.topk == 1000 and protocol.num_classes == 100


def test_imagenet_validation_per_class(imagenet_root):
    protocol = load_protocol(
        "imagenet-100", root=imagenet_root, validation_per_class=1, **IMAGENET_SMALL
    )
    assert per_class_counts(protocol.validation) == {c: 1 for c in range(100)}
    assert not ids(protocol.validation) & ids(protocol.train)


def test_imagenet_line_with_two_labels_names_the_line(tmp_path):
    names = write_images(tmp_path / "images", 4)
    labels = one_hot([0, 1, 2, 3], 100)
    labels[2, 50] = 1
    path = write_list(tmp_path / "imagenet-100.txt", names, labels)
    with pytest.raises(ValueError, match=f"{path}:3: .*exactly one 1; got 2"):
        load_protocol("imagenet-100", root=tmp_path)


def write_hashnet(root, multi_label, sizes=(12, 5, 30), num_classes=21):
    rng = np.random.default_rng(4)
    names = write_images(root / "images", sum(sizes))
    start = 0
    for file_name, size in zip(("train.txt", "test.txt", "database.txt"), sizes, strict=True):
        part = names[start : start + size]
        if multi_label:
            labels = random_multi_hot(rng, size, num_classes)
        else:
            labels = one_hot(np.arange(size) % num_classes, num_classes)
        write_list(root / file_name, part, labels)
        start += size
    return root


def test_hashnet_three_lists_are_train_query_database(tmp_path):
    root = write_hashnet(tmp_path, multi_label=True)
    protocol = load_protocol("nuswide-21", root=root)
    for dataset, file_name in (
        (protocol.train, "train.txt"),
        (protocol.query, "test.txt"),
        (protocol.database, "database.txt"),
    ):
        names, rows = parse_plainly(root / file_name)
        assert [dataset.path(i) for i in range(len(dataset))] == [str(root / n) for n in names]
        assert dataset.labels.tolist() == rows


def test_hashnet_lists_validation_comes_out_of_train(tmp_path):
    root = write_hashnet(tmp_path, multi_label=True)
    protocol = load_protocol("nuswide-21", root=root, validation_size=4, seed=1)
    assert len(protocol.train) == 8 and len(protocol.validation) == 4
    assert ids(protocol.train) | ids(protocol.validation) == set(range(12))
    assert not ids(protocol.train) & ids(protocol.validation)


def test_hashnet_imagenet_lists_give_integer_labels(tmp_path):
    root = write_hashnet(tmp_path, multi_label=False, sizes=(200, 10, 20), num_classes=100)
    protocol = load_protocol("imagenet-100", root=root, validation_per_class=1)
    assert protocol.query.labels.tolist() == list(range(10))
    assert per_class_counts(protocol.validation) == {c: 1 for c in range(100)}
    assert len(protocol.train) == 100


def test_hashnet_database_repeating_train_images_names_each_image_once(tmp_path, monkeypatch):
    # HashNet's database.txt repeats the train.txt images: a validation item held out of
    # training must not stay in the database it is validated against under another index.
    import torch

    from pml_hashing.training import EvaluationSettings, evaluation

    root = tmp_path
    names = write_images(root / "images", 300 + 10 + 50)
    train_names, test_names, extra = names[:300], names[300:310], names[310:]
    train_labels = one_hot(np.arange(300) % 100, 100)
    write_list(root / "train.txt", train_names, train_labels)
    write_list(root / "test.txt", test_names, one_hot(np.arange(10), 100))
    database_labels = np.concatenate([train_labels, one_hot(np.arange(50), 100)])
    write_list(root / "database.txt", train_names + extra, database_labels)
    protocol = load_protocol("imagenet-100", root=root, validation_per_class=1)
    database = protocol.database
    assert [database.path(i) for i in range(len(database))] == [
        str(root / n) for n in train_names + extra
    ]
    assert database.labels.tolist() == database_labels.argmax(1).tolist()
    # the reference set of validation: the database minus the validation images
    settings = EvaluationSettings(batch_size=64)

    def source_indices(model, method, data, *args, **kwargs):  # "outputs": the source index
        return torch.as_tensor(np.asarray(data.indices))[:, None].float(), torch.zeros(len(data))

    monkeypatch.setattr(evaluation, "encode_for_retrieval", source_indices)
    val_out, _, ref_out, _ = evaluation._validation_against_reference(
        None, None, protocol, settings, None
    )
    held_out = set(val_out[:, 0].int().tolist())
    assert len(held_out) == 100 and not held_out & set(ref_out[:, 0].int().tolist())
    assert len(ref_out) == len(database) - 100


def test_hashnet_lists_refuse_query_sizes(tmp_path):
    root = write_hashnet(tmp_path, multi_label=True)
    with pytest.raises(ValueError, match="fix the query and training sets"):
        load_protocol("nuswide-21", root=root, query_size=3)


def test_partial_hashnet_lists_name_the_missing_file(tmp_path):
    root = write_hashnet(tmp_path, multi_label=True)
    (root / "database.txt").unlink()
    with pytest.raises(FileNotFoundError, match=f"{root / 'database.txt'} does not exist"):
        load_protocol("nuswide-21", root=root)


def test_missing_lists_name_the_expected_paths_and_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'train.txt'} .*imagenet-100.txt"):
        load_protocol("imagenet-100", root=tmp_path)


def test_missing_image_names_its_path(tmp_path):
    names = [f"images/missing_{i}.jpg" for i in range(60)]
    write_list(
        tmp_path / "nuswide-21.txt", names, random_multi_hot(np.random.default_rng(0), 60, 21)
    )
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'images'}/missing_.*image_root"):
        load_protocol("nuswide-21", root=tmp_path, **NUS_SMALL)


def test_strip_prefix_and_image_root_resolve_absolute_hashnet_paths(tmp_path):
    names = write_images(tmp_path / "data" / "images", 60)
    absolute = [f"/home/author/dataset/{n}" for n in names]
    labels = random_multi_hot(np.random.default_rng(0), 60, 21)
    write_list(tmp_path / "nuswide-21.txt", absolute, labels)
    protocol = load_protocol(
        "nuswide-21",
        root=tmp_path,
        image_root=tmp_path / "data",
        strip_prefix="/home/author/dataset/",
        transform=np.asarray,
        **NUS_SMALL,
    )
    assert protocol.query[0][0].shape == (6, 5, 3)


def test_malformed_line_names_file_and_line_number(tmp_path):
    path = tmp_path / "nuswide-21.txt"
    path.write_text("a.jpg " + " ".join(["0"] * 21) + "\n\nb.jpg " + " ".join(["1"] * 20) + "\n")
    with pytest.raises(ValueError, match=f"{path}:3: expected .*21 label columns; got 20"):
        load_protocol("nuswide-21", root=tmp_path)


def test_label_other_than_zero_or_one_names_the_line(tmp_path):
    path = tmp_path / "l.txt"
    path.write_text("a.jpg 0 1 0\nb.jpg 0 2 0\n")
    with pytest.raises(ValueError, match=f"{path}:2: labels must be 0 or 1; got '2' in column 3"):
        read_image_list(path, 3)


def test_list_saved_split_round_trip(nuswide_root, tmp_path):
    first = load_protocol("nuswide-21", root=nuswide_root, seed=9, validation_size=2, **NUS_SMALL)
    path = first.save_splits(tmp_path / "splits.json")
    again = load_protocol(
        "nuswide-21", root=nuswide_root, split_file=path, validation_size=2, **NUS_SMALL
    )
    assert again.seed == 9 and again.split_indices() == first.split_indices()
    with pytest.raises(ValueError, match="split 'train' must have 21 items .* got 20"):
        load_protocol(
            "nuswide-21",
            root=nuswide_root,
            split_file=path,
            validation_size=2,
            query_size=6,
            train_size=21,
        )


@settings(max_examples=25, deadline=None)
@given(rows=st.lists(st.lists(st.integers(0, 1), min_size=4, max_size=4), min_size=1, max_size=20))
def test_read_image_list_round_trips_any_multi_hot_matrix(rows, tmp_path_factory):
    path = tmp_path_factory.mktemp("lists") / "l.txt"
    names = [f"dir/{i}.jpg" for i in range(len(rows))]
    write_list(path, names, rows)
    paths, labels = read_image_list(path, 4)
    assert paths == names
    assert labels.dtype == np.int64 and labels.tolist() == rows
