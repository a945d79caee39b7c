"""refinery.dedup"""
