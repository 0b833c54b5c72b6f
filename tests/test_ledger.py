"""Ledger validation: every malformed entry is a one-line error naming file, entry and field."""

from pathlib import Path

import pytest

from verify.ledger import LedgerError, default_seeds_dir, load_all, load_ledger

REPO = Path(__file__).resolve().parent.parent

VALID_CLAIM = '''
[[claim]]
id = "toy-claim"
system = "toy"
source = { repository = "someone/toy", file = "README.md", document = "toy.txt" }
quote = "Toy retention: 1.0000x"
metric = "value"
metric_args = { key = "retention" }
claimed = 1.0
comparison = "equal"
kind = "exact"
tolerance = 0.00005
tolerance_origin = "printed to 4 decimals"
protocol = "implementations.sgm.protocols:quickstart_retention"
seeds = [1, 2, 3]
tier = "ci"
device = "any"
'''


def write(tmp_path, text, name="claims.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_valid_entry_loads(tmp_path):
    (entry,) = load_ledger(write(tmp_path, VALID_CLAIM))
    assert entry.id == "toy-claim" and entry.seeds == (1, 2, 3) and entry.claimed == 1.0
    assert entry.metric_args == {"key": "retention"}


@pytest.mark.parametrize("change,field,problem", [
    (("tolerance = 0.00005", 'tolerance = "small"'), "tolerance", "expected int or float, got str"),
    (("seeds = [1, 2, 3]", "seeds = [1, 2, 2]"), "seeds", "duplicate"),
    (("seeds = [1, 2, 3]", 'seeds = ["a"]'), "seeds", "non-empty list of integers"),
    (('metric = "value"', 'metric = "accuracy_of_dreams"'), "metric", "unknown metric"),
    (('comparison = "equal"', 'comparison = "roughly"'), "comparison", "not one of"),
    (('device = "any"', 'device = "any"\nexpected = "reproduced"'), "expected", "results/baseline.json"),
    (('protocol = "implementations.sgm.protocols:quickstart_retention"', 'protocol = "toy"'), "protocol", "package.module:function"),
    (("claimed = 1.0", "claimed = [2.0, 1.0]"), "claimed", "exceeds"),
    (("claimed = 1.0", "claimed = true"), "claimed", "got bool"),
    (('tier = "ci"', 'tier = "nightly"'), "tier", "not one of"),
    (('id = "toy-claim"', 'id = "Toy Claim"'), "id", "slug"),
])
def test_wrong_field_is_named(tmp_path, change, field, problem):
    path = write(tmp_path, VALID_CLAIM.replace(*change))
    with pytest.raises(LedgerError) as error:
        load_ledger(path)
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message and f"field '{field}'" in message and problem in message


def test_missing_field_is_named(tmp_path):
    path = write(tmp_path, VALID_CLAIM.replace('tolerance_origin = "printed to 4 decimals"\n', ""))
    with pytest.raises(LedgerError, match=r"claim 'toy-claim': field 'tolerance_origin': missing"):
        load_ledger(path)


def test_unknown_field_is_named(tmp_path):
    path = write(tmp_path, VALID_CLAIM + 'tolerence = 0.1\n')
    with pytest.raises(LedgerError, match=r"field 'tolerence': unknown field"):
        load_ledger(path)


def test_quote_not_in_source(tmp_path):
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "toy.txt").write_text("Toy   retention:\n 1.0000x and more")
    assert load_ledger(write(tmp_path, VALID_CLAIM), seeds)  # whitespace differences are fine
    path = write(tmp_path, VALID_CLAIM.replace("Toy retention: 1.0000x", "Toy retention: 2.0000x"), "bad.toml")
    with pytest.raises(LedgerError, match=r"claim 'toy-claim': field 'quote': not found in .*toy.txt"):
        load_ledger(path, seeds)


def test_finding_must_point_at_a_claim(tmp_path):
    finding = '''
[[finding]]
id = "toy-finding"
system = "toy"
of = "no-such-claim"
title = "a control"
metric = "value"
metric_args = { key = "x" }
protocol = "implementations.sgm.protocols:quickstart_retention"
seeds = [1]
tier = "ci"
device = "any"
'''
    with pytest.raises(LedgerError, match=r"finding 'toy-finding': field 'of': no claim 'no-such-claim'"):
        load_ledger(write(tmp_path, VALID_CLAIM + finding))
    (claim, found) = load_ledger(write(tmp_path, VALID_CLAIM + finding.replace("no-such-claim", "toy-claim")))
    assert found.kind == "finding" and found.claimed is None


def test_duplicate_ids(tmp_path):
    with pytest.raises(LedgerError, match=r"entry 'toy-claim': field 'id': used more than once"):
        load_ledger(write(tmp_path, VALID_CLAIM + VALID_CLAIM))


def test_invalid_toml_names_file(tmp_path):
    path = write(tmp_path, "[[claim]\nid=")
    with pytest.raises(LedgerError, match="not valid TOML"):
        load_ledger(path)


def test_repository_ledgers_are_valid_and_quotes_are_in_their_sources():
    seeds_dir = default_seeds_dir()
    if seeds_dir is None:
        pytest.skip("../shared/seeds is not here: quotes cannot be checked")
    entries = load_all(REPO / "claims", seeds_dir)
    assert entries, "no ledger entries found under claims/"
    for entry in entries:
        if entry.kind == "claim":
            assert entry.quote and entry.source and entry.source.document


def test_repository_protocols_resolve():
    from verify.executors import resolve_protocol

    for entry in load_all(REPO / "claims"):
        assert callable(resolve_protocol(entry.protocol)), entry.id


EXPERIMENT = '''
[[experiment]]
id = "toy-experiment"
protocol = "implementations.sgm.protocols:quickstart_retention"
params = { dim = 100 }
seeds = [1, 2, 3, 4, 5]
tier = "ci"
device = "any"
'''

LINKED_CLAIM = (VALID_CLAIM.replace('id = "toy-claim"', 'id = "toy-linked"')
                .replace('kind = "exact"', 'kind = "universal"')
                .replace('protocol = "implementations.sgm.protocols:quickstart_retention"\nseeds = [1, 2, 3]\n'
                         'tier = "ci"\ndevice = "any"\n', 'experiment = "toy-experiment"\n'))


def test_an_entry_takes_protocol_params_and_seeds_from_its_experiment(tmp_path):
    (entry,) = load_ledger(write(tmp_path, EXPERIMENT + LINKED_CLAIM))
    assert entry.experiment == "toy-experiment" and entry.claim_kind == "universal"
    assert entry.protocol.endswith(":quickstart_retention") and entry.params == {"dim": 100}
    assert entry.seeds == (1, 2, 3, 4, 5) and entry.tier == "ci"


@pytest.mark.parametrize("text,message", [
    (EXPERIMENT + LINKED_CLAIM.replace('experiment = "toy-experiment"', 'experiment = "nope"'),
     r"claim 'toy-linked': field 'experiment': no \[\[experiment\]\] 'nope' in this file \(known: toy-experiment\)"),
    (EXPERIMENT + LINKED_CLAIM.replace('experiment = "toy-experiment"', 'experiment = "toy-experiment"\nseeds = [1]'),
     r"claim 'toy-linked': field 'seeds': belongs to experiment 'toy-experiment'; remove it here"),
    (EXPERIMENT + EXPERIMENT.replace('"toy-experiment"', '"unused"') + LINKED_CLAIM,
     r"experiment 'unused': no claim or finding names it"),
    (EXPERIMENT + EXPERIMENT + LINKED_CLAIM, r"experiment 'toy-experiment': field 'id': used more than once"),
    (EXPERIMENT.replace('tier = "ci"', 'tier = "weekly"') + LINKED_CLAIM, r"experiment 'toy-experiment': field 'tier'"),
    (EXPERIMENT + LINKED_CLAIM.replace('kind = "universal"', 'kind = "often"'), r"field 'kind': 'often' is not one of"),
    (EXPERIMENT + LINKED_CLAIM.replace('kind = "universal"\n', ''), r"claim 'toy-linked': field 'kind': missing"),
    (EXPERIMENT + LINKED_CLAIM.replace('kind = "universal"', 'kind = "single_run"').replace(
        'comparison = "equal"', 'comparison = "exact"'), r"a single_run claim cannot be judged with comparison 'exact'"),
    (EXPERIMENT.replace("[1, 2, 3, 4, 5]", "[1, 2, 3]") + LINKED_CLAIM,
     r"field 'kind': a universal claim needs at least 5 seeds; experiment 'toy-experiment' has 3"),
])
def test_experiment_links_and_kinds_are_checked(tmp_path, text, message):
    with pytest.raises(LedgerError, match=message):
        load_ledger(write(tmp_path, text))


def test_a_finding_with_a_claimed_value_needs_a_kind_and_one_without_has_none(tmp_path):
    finding = '''
[[finding]]
id = "toy-control"
system = "toy"
of = "toy-linked"
title = "a control"
metric = "value"
metric_args = { key = "x" }
experiment = "toy-experiment"
'''
    entries = load_ledger(write(tmp_path, EXPERIMENT + LINKED_CLAIM + finding))
    assert entries[1].claim_kind is None and entries[1].claimed is None
    with pytest.raises(LedgerError, match="a finding with a claimed value needs a kind"):
        load_ledger(write(tmp_path, EXPERIMENT + LINKED_CLAIM + finding + 'claimed = 1.0\ncomparison = "equal"\n'))


def test_a_quote_is_located_by_lines_as_the_check_matches_it():
    from verify.ledger import quote_lines

    text = "a b\nc  d e\n\nf g"
    assert quote_lines("b c d", text) == (1, 2)  # across a line break, whitespace-normalised
    assert quote_lines("f", text) == (4, 4) and quote_lines("d e f", text) == (2, 4)
    assert quote_lines("x", text) is None and quote_lines("", text) is None


def test_provenance_names_the_archived_document_by_hash_and_lines(tmp_path):
    import hashlib

    from verify.ledger import document_provenance

    seeds = tmp_path / "seeds"
    seeds.mkdir()
    document = seeds / "toy.txt"
    document.write_text("# Toy\n\nIntro.\nToy\nretention: 1.0000x and more.\n")
    (entry,) = load_ledger(write(tmp_path, VALID_CLAIM), seeds)
    assert document_provenance(entry, seeds) == {"document_sha256": hashlib.sha256(document.read_bytes()).hexdigest(),
                                                 "lines": [4, 5]}
    assert document_provenance(entry, None) is None


def test_check_ledgers_can_require_the_archived_sources(tmp_path, capsys):
    from verify import cli

    assert cli.main(["check-ledgers", "--seeds-dir", str(tmp_path / "absent"), "--require-sources"]) == 1
    assert "archived source documents are absent" in capsys.readouterr().err
