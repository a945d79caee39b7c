"""Students: small classifiers trained on a teacher's labels (fastText; frozen encoder + linear/MLP head).

Every student is a folder with ``student.json`` (kind, task, classes, prompt, training settings) and its weights in
a safe format (fastText ``.bin``; safetensors). :func:`load_student` opens any of them.
"""
