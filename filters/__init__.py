"""refinery.filters"""
