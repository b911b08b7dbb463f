"""``cvkit retrieve``: a trained classifier as a feature extractor for image search.

``build_index`` embeds a dataset split (the penultimate layer by default, L2-normalized);
``query`` finds the nearest indexed images of new ones by exact chunked search (or a faiss index);
``evaluate_index`` measures precision@k, recall@k and mAP against raw pixels; ``duplicates`` lists
near-identical pairs and flags those that cross splits.
"""

from cvkit.retrieve.duplicates import DuplicatesResult, duplicates
from cvkit.retrieve.evaluate import RetrievalEval, evaluate_index, parse_ks
from cvkit.retrieve.index import IndexResult, build_index, embed, load_index
from cvkit.retrieve.merge import merge_index
from cvkit.retrieve.query import QueryResult, query
from cvkit.retrieve.search import Rows, search

__all__ = ["merge_index", "DuplicatesResult", "IndexResult", "QueryResult", "RetrievalEval", "Rows", "build_index", "duplicates",
           "embed", "evaluate_index", "load_index", "parse_ks", "query", "search"]
