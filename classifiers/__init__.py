"""refinery.classifiers"""
