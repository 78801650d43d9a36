"""Every artifact in the format its ecosystem loads with no code of ours (issue 28), and the
paper cited as what it is: an arXiv preprint, submitted to ICLR 2024 and not accepted."""
import subprocess

from bridgelib.config import REPO_ROOT


def test_the_paper_is_cited_as_the_arxiv_preprint_it_is():
    hits = subprocess.run(["git", "grep", "-n", "ICLR", "--", "README.md", "docs"], cwd=REPO_ROOT,
                          capture_output=True, text=True).stdout.splitlines()
    assert hits, "README and docs/paper.md say where the paper was submitted"
    for hit in hits:  # the only venue named is the one it was submitted to
        assert "submitted to ICLR 2024" in hit, hit
    readme = (REPO_ROOT / "README.md").read_text()
    bib = readme[readme.index("```bibtex"):].split("```")[1]
    assert "eprint" in bib and "2403.19866" in bib and "booktitle" not in bib
    assert "up to 30%" in readme and "--match-compute" in readme
