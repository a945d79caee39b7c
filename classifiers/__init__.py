"""refinery.classifiers: the teacher-student loop of Llama 3's quality and domain classifiers, inside Refinery.

sample (``sampling``) → label with a teacher LLM (``labelling``, ``refinery label``) → train a student
(``students``, ``refinery train-classifier``) → evaluate it against the teacher (``evaluation``,
``refinery eval-classifier``) → score a corpus (``scoring``: the ``quality_classifier``, ``quality_percentile``
and ``domain_classifier`` stages). See docs/classifiers.md.
"""
